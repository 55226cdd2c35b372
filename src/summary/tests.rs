//! Checks against PyTorch's own output (tests/fixtures/summaries, made by scripts/fixtures/summary_reference.py).

use super::*;
use crate::data::shape::InputShape;
use crate::model::builtins::{Stem, resnet18, simple_cnn, simple_cnn_for};
use crate::model::decl::Window;

const SIMPLECNN: &str = include_str!("../../tests/fixtures/summaries/simplecnn_summary.txt");
const RESNET18: &str = include_str!("../../tests/fixtures/summaries/resnet18_summary.txt");
const RESNET18_CIFAR_W8: &str = include_str!("../../tests/fixtures/summaries/resnet18_cifar_w8_summary.txt");
const MIXED: &str = include_str!("../../tests/fixtures/summaries/mixed_summary.txt");
const LENET5_MNIST: &str = include_str!("../../tests/fixtures/summaries/lenet5_mnist_summary.txt");
const SIMPLECNN_MNIST: &str = include_str!("../../tests/fixtures/summaries/simplecnn_mnist_summary.txt");
const COUNTS: &str = include_str!("../../tests/fixtures/summaries/counts.json");

#[derive(serde::Deserialize)]
struct Reference {
    thop_macs: u64,
    thop_params: u64,
    thop_per_layer: Vec<(String, u64)>,
    torchinfo_mult_adds: u64,
}

fn reference(model: &str) -> Reference {
    let all: std::collections::BTreeMap<String, Reference> =
        serde_json::from_str(COUNTS).expect("counts.json parses");
    all.into_iter()
        .find(|(k, _)| k == model)
        .map(|(_, v)| v)
        .expect("model present in counts.json")
}

fn conv(name: &str, out: usize, kernel: usize, stride: usize, padding: usize, bias: bool) -> Node {
    Node::new(
        name,
        Op::Conv2d {
            out_channels: out,
            kernel,
            stride,
            padding,
            bias,
        },
    )
}

/// The same network as scripts/fixtures/summary_reference.py's `Mixed`.
pub(crate) fn mixed() -> ModelDecl {
    let window = |kernel, stride, padding| Window {
        kernel,
        stride,
        padding,
    };
    ModelDecl {
        class_name: "Mixed".into(),
        input: vec![3, 32, 32],
        layers: vec![
            conv("conv1", 16, 3, 1, 1, false),
            Node::new("bn1", Op::BatchNorm2d),
            Node::new("act1", Op::LeakyRelu { negative_slope: 0.1 }),
            Node::new("pool1", Op::AvgPool2d(window(2, 2, 0))),
            conv("conv2", 32, 3, 2, 1, true),
            Node::new("act2", Op::Gelu),
            Node::new("pool2", Op::MaxPool2d(window(3, 1, 1))),
            Node::new(
                "block",
                Op::Residual {
                    class_name: "Block".into(),
                    body: vec![conv("conv", 32, 3, 1, 1, false), Node::new("bn", Op::BatchNorm2d)],
                    shortcut: None,
                    activation: None,
                },
            ),
            Node::new("gap", Op::AdaptiveAvgPool2d { output: 2 }),
            Node::new("flatten", Op::Flatten),
            Node::new(
                "fc1",
                Op::Linear {
                    out_features: 64,
                    bias: false,
                },
            ),
            Node::new("drop", Op::Dropout { p: 0.2 }),
            Node::new(
                "fc2",
                Op::Linear {
                    out_features: 10,
                    bias: true,
                },
            ),
        ],
    }
}

fn check_against_pytorch(decl: &ModelDecl, text: &str, model: &str) -> ModelSummary {
    let s = summarize(decl).expect("declaration is valid");
    assert_eq!(
        render_seed_text(&s),
        text,
        "{model}: seed text differs from PyTorch's"
    );
    let r = reference(model);
    assert_eq!(s.flops.thop_macs, r.thop_macs, "{model}: thop MACs");
    assert_eq!(s.flops.thop_params, r.thop_params, "{model}: thop params");
    assert_eq!(
        s.flops.torchinfo_mult_adds, r.torchinfo_mult_adds,
        "{model}: torchinfo mult-adds"
    );
    assert_eq!(
        s.flops.per_layer, r.thop_per_layer,
        "{model}: thop per-module MACs"
    );
    s
}

/// pipelines/mnist.yaml's LeNet-5, as its `layers:` declare it (summary_reference.py's `LeNet5`).
fn lenet5_mnist() -> ModelDecl {
    let linear = |name: &str, out_features| {
        Node::new(
            name,
            Op::Linear {
                out_features,
                bias: true,
            },
        )
    };
    let pool = |name: &str| {
        Node::new(
            name,
            Op::MaxPool2d(Window {
                kernel: 2,
                stride: 2,
                padding: 0,
            }),
        )
    };
    ModelDecl {
        class_name: "LeNet5".into(),
        input: InputShape::MNIST.dims(),
        layers: vec![
            conv("conv1", 6, 5, 1, 2, true),
            Node::new("relu1", Op::Relu),
            pool("pool1"),
            conv("conv2", 16, 5, 1, 0, true),
            Node::new("relu2", Op::Relu),
            pool("pool2"),
            Node::new("flatten", Op::Flatten),
            linear("fc1", 120),
            Node::new("relu3", Op::Relu),
            linear("fc2", 84),
            Node::new("relu4", Op::Relu),
            linear("fc3", 10),
        ],
    }
}

#[test]
fn greyscale_28_pixel_models_match_pytorch_byte_for_byte() {
    let s = check_against_pytorch(&lenet5_mnist(), LENET5_MNIST, "lenet5_mnist");
    assert_eq!((s.flops.thop_macs, s.total_params), (416_520, 61_706));
    let decl = simple_cnn_for(InputShape::MNIST, 10, 0.5).unwrap();
    let s = check_against_pytorch(&decl, SIMPLECNN_MNIST, "simplecnn_mnist");
    assert_eq!((s.flops.thop_macs, s.total_params), (7_638_272, 104_650));
}

#[test]
fn simple_cnn_matches_the_seed_byte_for_byte() {
    let s = check_against_pytorch(&simple_cnn(10, 0.5), SIMPLECNN, "simplecnn");
    assert_eq!(s.flops.thop_macs, 10_571_776);
    assert_eq!(s.flops.thop_params, 114_186);
    assert_eq!(s.total_params, 114_186);
    assert_eq!(s.rows.len(), 14);
    assert_eq!(s.flops.kind("Conv2d"), 884_736 + 4_718_592 + 4_718_592);
    assert_eq!(s.flops.kind("BatchNorm2d"), 131_072 + 65_536 + 32_768);
    assert_eq!(s.flops.kind("Linear"), 20_480);
    assert_eq!(s.flops.macs_conv_linear_only, 10_571_776 - 229_376);
    assert_eq!(s.flops.flops_2x_macs, 21_143_552);
    assert_eq!(s.forward_backward_mb, 1.4375762939453125);
    assert_eq!(s.params_mb, 0.43558502197265625);
    assert_eq!(s.input_mb, 0.01171875);
}

#[test]
fn resnet18_matches_the_seed_byte_for_byte() {
    let s = check_against_pytorch(&resnet18(10, Stem::Imagenet, 64), RESNET18, "resnet18");
    assert_eq!(s.flops.thop_macs, 37_220_352);
    assert_eq!(s.flops.thop_params, 11_181_642);
    assert_eq!(s.flops.kind("Conv2d"), 37_011_456);
    assert_eq!(s.flops.kind("BatchNorm2d"), 202_752);
    assert_eq!(s.flops.kind("AdaptiveAvgPool2d"), 1024);
    assert_eq!(s.flops.kind("Linear"), 5120);
    assert_eq!(s.forward_backward_mb, 1.2852325439453125);
    let blocks: Vec<&SummaryRow> = s.rows.iter().filter(|r| r.type_name == "ResBlock").collect();
    assert_eq!(blocks.len(), 8);
    assert_eq!(blocks[0].name, "ResBlock-11");
    assert_eq!(blocks[0].path, "layer1.0");
    // The shared ReLU is one module called twice: two rows, one thop entry.
    let relu_rows = s.rows.iter().filter(|r| r.path == "layer1.0.relu").count();
    assert_eq!(relu_rows, 2);
    let relu_modules = s
        .flops
        .per_layer
        .iter()
        .filter(|(p, _)| p == "layer1.0.relu")
        .count();
    assert_eq!(relu_modules, 1);
    let ds = s
        .rows
        .iter()
        .position(|r| r.path == "layer2.0.downsample.0")
        .unwrap();
    assert_eq!(s.rows[ds - 1].path, "layer2.0.bn2");
    assert_eq!(s.rows[ds + 2].path, "layer2.0.relu");
    assert_eq!(s.rows[ds + 3].path, "layer2.0");
}

#[test]
fn resnet18_cifar_stem_width_8_matches_pytorch() {
    let decl = resnet18(10, Stem::Cifar, 8);
    let s = check_against_pytorch(&decl, RESNET18_CIFAR_W8, "resnet18_cifar_w8");
    assert_eq!(s.total_params, decl.param_count().unwrap());
    assert_eq!(s.non_trainable_params, 0);
}

#[test]
fn other_layer_types_match_pytorch() {
    let s = check_against_pytorch(&mixed(), MIXED, "mixed");
    assert_eq!(s.flops.kind("AvgPool2d"), 16 * 16 * 16);
    assert_eq!(s.flops.kind("AdaptiveAvgPool2d"), 17 * 128);
    assert!(s.rows.iter().any(|r| r.name == "Flatten-12"));
}

#[test]
fn node_names_do_not_change_the_table() {
    let mut renamed = simple_cnn(10, 0.5);
    for (i, node) in renamed.layers.iter_mut().enumerate() {
        if !matches!(node.op, Op::View) {
            node.name = format!("step_{i}");
        }
    }
    renamed.class_name = "SomethingElse".into();
    let a = summarize(&simple_cnn(10, 0.5)).unwrap();
    let b = summarize(&renamed).unwrap();
    assert_eq!(render_seed_text(&b), SIMPLECNN);
    assert_eq!(b.flops.thop_macs, a.flops.thop_macs);
    assert_eq!(b.flops.per_layer[0].0, "step_0");
}

#[test]
fn a_view_gives_no_row_but_flatten_does() {
    let mut decl = simple_cnn(10, 0.5);
    let view = decl.layers.iter().position(|n| matches!(n.op, Op::View)).unwrap();
    decl.layers[view] = Node::new("flatten", Op::Flatten);
    let s = summarize(&decl).unwrap();
    assert_eq!(s.rows.len(), 15);
    assert_eq!(s.rows[13].name, "Flatten-14");
    assert_eq!(s.rows[13].output_shape, vec![2048]);
    assert_eq!(s.rows[14].name, "Linear-15");
    // The extra row's output counts in the forward/backward estimate; thop gives nn.Flatten no rule.
    let seed = summarize(&simple_cnn(10, 0.5)).unwrap();
    assert_eq!(s.flops.thop_macs, seed.flops.thop_macs);
    assert_eq!(s.flops.thop_params, seed.flops.thop_params);
    assert_eq!(s.flops.torchinfo_mult_adds, seed.flops.torchinfo_mult_adds);
    assert!(s.flops.per_layer.contains(&("flatten".to_string(), 0)));
    assert_eq!(
        s.forward_backward_mb,
        seed.forward_backward_mb + 2.0 * 2048.0 * 4.0 / 1048576.0
    );
}

#[test]
fn shape_errors_come_back() {
    let mut decl = simple_cnn(10, 0.5);
    decl.layers.retain(|n| !matches!(n.op, Op::View));
    let err = summarize(&decl).unwrap_err();
    assert_eq!(err.path, "fc");
}

#[test]
fn summary_round_trips_through_json() {
    let s = summarize(&resnet18(10, Stem::Imagenet, 64)).unwrap();
    let json = serde_json::to_string(&s).unwrap();
    let back: ModelSummary = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    assert_eq!(render_seed_text(&back), RESNET18);
}
