//! The built-in models, written in the same layer vocabulary a user writes under `layers:`.

use super::decl::{ModelDecl, Node, Op, Window};

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

fn pool(name: &str, kernel: usize, stride: usize, padding: usize) -> Node {
    Node::new(
        name,
        Op::MaxPool2d(Window {
            kernel,
            stride,
            padding,
        }),
    )
}

/// The seed's Task 1 network (../shared/refs/models.py `SimpleCNN`).
pub fn simple_cnn(num_classes: usize, dropout: f64) -> ModelDecl {
    let mut layers = Vec::new();
    for (i, ch) in [32, 64, 128].into_iter().enumerate() {
        let k = i + 1;
        layers.push(conv(&format!("conv{k}"), ch, 3, 1, 1, true));
        layers.push(Node::new(format!("bn{k}"), Op::BatchNorm2d));
        layers.push(Node::new(format!("relu{k}"), Op::Relu));
        layers.push(pool(&format!("pool{k}"), 2, 2, 0));
    }
    layers.push(Node::new("dropout", Op::Dropout { p: dropout }));
    layers.push(Node::new("", Op::View));
    layers.push(Node::new(
        "fc",
        Op::Linear {
            out_features: num_classes,
            bias: true,
        },
    ));
    ModelDecl {
        class_name: "SimpleCNN".into(),
        input: vec![3, 32, 32],
        layers,
    }
}

/// Which first layers ResNet-18 uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stem {
    /// torchvision's 7×7 stride-2 conv and 3×3 stride-2 padded max-pool (the seed's).
    Imagenet,
    /// A 3×3 stride-1 conv and no pool, common for 32×32 inputs.
    Cifar,
}

/// torchvision's BasicBlock as the seed writes it (one ReLU module used twice).
pub fn basic_block(name: &str, in_ch: usize, out_ch: usize, stride: usize) -> Node {
    let body = vec![
        conv("conv1", out_ch, 3, stride, 1, false),
        Node::new("bn1", Op::BatchNorm2d),
        Node::new("relu", Op::Relu),
        conv("conv2", out_ch, 3, 1, 1, false),
        Node::new("bn2", Op::BatchNorm2d),
    ];
    let shortcut = (stride != 1 || in_ch != out_ch).then(|| {
        Box::new(Node::new(
            "downsample",
            Op::Sequential(vec![
                conv("0", out_ch, 1, stride, 0, false),
                Node::new("1", Op::BatchNorm2d),
            ]),
        ))
    });
    Node::new(
        name,
        Op::Residual {
            class_name: "ResBlock".into(),
            body,
            shortcut,
            activation: Some(Box::new(Node::new("relu", Op::Relu))),
        },
    )
}

/// ResNet-18 with torchvision's module names, for `num_classes` outputs and `width` channels in layer1.
pub fn resnet18(num_classes: usize, stem: Stem, width: usize) -> ModelDecl {
    let mut layers = match stem {
        Stem::Imagenet => vec![
            conv("conv1", width, 7, 2, 3, false),
            Node::new("bn1", Op::BatchNorm2d),
            Node::new("relu", Op::Relu),
            pool("maxpool", 3, 2, 1),
        ],
        Stem::Cifar => vec![
            conv("conv1", width, 3, 1, 1, false),
            Node::new("bn1", Op::BatchNorm2d),
            Node::new("relu", Op::Relu),
        ],
    };
    let mut in_ch = width;
    for (i, mult) in [1, 2, 4, 8].into_iter().enumerate() {
        let out = width * mult;
        let stride = if i == 0 { 1 } else { 2 };
        let blocks = vec![
            basic_block("0", in_ch, out, stride),
            basic_block("1", out, out, 1),
        ];
        layers.push(Node::new(format!("layer{}", i + 1), Op::Sequential(blocks)));
        in_ch = out;
    }
    layers.push(Node::new("avgpool", Op::AdaptiveAvgPool2d { output: 1 }));
    layers.push(Node::new("", Op::View));
    layers.push(Node::new(
        "fc",
        Op::Linear {
            out_features: num_classes,
            bias: true,
        },
    ));
    ModelDecl {
        class_name: "ResNet18".into(),
        input: vec![3, 32, 32],
        layers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_the_seed() {
        assert_eq!(simple_cnn(10, 0.5).param_count().unwrap(), 114_186);
        assert_eq!(
            resnet18(10, Stem::Imagenet, 64).param_count().unwrap(),
            11_181_642
        );
    }

    #[test]
    fn resnet_names_follow_torchvision() {
        let names: Vec<String> = resnet18(10, Stem::Imagenet, 64)
            .tensors()
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        for expected in [
            "conv1.weight",
            "bn1.running_mean",
            "bn1.num_batches_tracked",
            "layer1.0.conv1.weight",
            "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.running_var",
            "layer4.1.bn2.bias",
            "fc.bias",
        ] {
            assert!(names.iter().any(|n| n == expected), "missing {expected}");
        }
        assert_eq!(names.len(), 62 + 3 * 20);
    }

    #[test]
    fn output_shapes() {
        assert_eq!(simple_cnn(10, 0.5).output_shape().unwrap(), vec![10]);
        assert_eq!(resnet18(10, Stem::Cifar, 8).output_shape().unwrap(), vec![10]);
    }
}
