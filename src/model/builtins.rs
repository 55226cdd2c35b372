//! The built-in models, written in the same layer vocabulary a user writes under `layers:`.

use super::decl::{ModelDecl, Node, Op, Window};
use crate::data::shape::InputShape;

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

/// Smallest image side SimpleCNN takes: its three 2×2 pools need at least 8 pixels to leave one.
pub const SIMPLE_CNN_MIN_SIDE: usize = 8;

/// The seed's Task 1 network (../shared/refs/models.py `SimpleCNN`) on its 3×32×32 CIFAR input.
pub fn simple_cnn(num_classes: usize, dropout: f64) -> ModelDecl {
    simple_cnn_for(InputShape::CIFAR, num_classes, dropout).expect("32×32 is large enough for SimpleCNN")
}

/// SimpleCNN for images of `input`: `conv1` takes its channels and `fc` the features left after three pools
/// (128 × ⌊H/8⌋ × ⌊W/8⌋); refused, with the reason, when a side is below [`SIMPLE_CNN_MIN_SIDE`].
pub fn simple_cnn_for(input: InputShape, num_classes: usize, dropout: f64) -> Result<ModelDecl, String> {
    if input.height < SIMPLE_CNN_MIN_SIDE || input.width < SIMPLE_CNN_MIN_SIDE {
        return Err(format!(
            "simple_cnn halves the image three times and needs at least {m}×{m} pixels, but the images are \
             {input}",
            m = SIMPLE_CNN_MIN_SIDE
        ));
    }
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
    Ok(ModelDecl {
        class_name: "SimpleCNN".into(),
        input: input.dims(),
        layers,
    })
}

/// Which first layers ResNet-18 uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// ResNet-18 with torchvision's module names on 3×32×32 input, for `num_classes` outputs and `width` channels
/// in layer1.
pub fn resnet18(num_classes: usize, stem: Stem, width: usize) -> ModelDecl {
    resnet18_for(InputShape::CIFAR, num_classes, stem, width)
}

/// ResNet-18 for images of `input` (`conv1` takes its channels). Any size of at least 1×1 works: the padded
/// stride-2 layers never shrink a side below 1 and the adaptive pool ends at 1×1.
pub fn resnet18_for(input: InputShape, num_classes: usize, stem: Stem, width: usize) -> ModelDecl {
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
        input: input.dims(),
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
    fn the_input_shape_sets_the_first_conv_and_the_classifier() {
        let mnist = simple_cnn_for(InputShape::MNIST, 10, 0.5).unwrap();
        assert_eq!(mnist.input, vec![1, 28, 28]);
        let tensors = mnist.tensors().unwrap();
        let shape = |name: &str| tensors.iter().find(|t| t.name == name).unwrap().shape.clone();
        assert_eq!(shape("conv1.weight"), vec![32, 1, 3, 3]);
        // 28 → 14 → 7 → 3 after the three pools.
        assert_eq!(shape("fc.weight"), vec![10, 128 * 3 * 3]);
        let oblong = simple_cnn_for(InputShape::new(3, 40, 16), 7, 0.5).unwrap();
        assert_eq!(oblong.output_shape().unwrap(), vec![7]);
        let err = simple_cnn_for(InputShape::new(1, 8, 7), 10, 0.5).unwrap_err();
        assert!(err.contains("at least 8×8") && err.contains("1×8×7"), "{err}");
        for side in [1, 5, 28] {
            let r = resnet18_for(InputShape::new(1, side, side), 10, Stem::Imagenet, 4);
            assert_eq!(r.output_shape().unwrap(), vec![10], "side {side}");
        }
        let r = resnet18_for(InputShape::MNIST, 10, Stem::Cifar, 4)
            .tensors()
            .unwrap();
        assert_eq!(r[0].shape, vec![4, 1, 3, 3]);
    }

    #[test]
    fn output_shapes() {
        assert_eq!(simple_cnn(10, 0.5).output_shape().unwrap(), vec![10]);
        assert_eq!(resnet18(10, Stem::Cifar, 8).output_shape().unwrap(), vec![10]);
    }
}
