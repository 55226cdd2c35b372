//! The model declaration: one tree of named layers from which training, the summary table, the FLOPs count
//! and the diagram are all derived, so they can never disagree.
//!
//! Names are PyTorch `state_dict` path segments: `conv1`, `layer1` → `0` → `conv1`, `downsample` → `0`.

use serde::{Deserialize, Serialize};

/// A shape without the batch dimension: `[C, H, W]` for images, `[F]` for features.
pub type Shape = Vec<usize>;

/// Window geometry of a pooling layer, used as is by the pooling ops (ops/max_pool.rs adds their geometry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Square window side.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
    /// Implicit padding on every side.
    pub padding: usize,
}

/// One layer (or container) of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// nn.Conv2d with square kernel; `in_channels` is inferred.
    Conv2d {
        /// Output channels.
        out_channels: usize,
        /// Square kernel side.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Zero padding on every side.
        padding: usize,
        /// Whether the layer has a bias.
        bias: bool,
    },
    /// nn.BatchNorm2d (affine, momentum 0.1, eps 1e-5, running statistics).
    BatchNorm2d,
    /// nn.ReLU.
    Relu,
    /// nn.LeakyReLU.
    LeakyRelu {
        /// Slope for negative inputs.
        negative_slope: f64,
    },
    /// nn.GELU (exact, erf form).
    Gelu,
    /// nn.MaxPool2d.
    MaxPool2d(Window),
    /// nn.AvgPool2d (count_include_pad=True, PyTorch's default).
    AvgPool2d(Window),
    /// nn.AdaptiveAvgPool2d to `output × output`.
    AdaptiveAvgPool2d {
        /// Output side.
        output: usize,
    },
    /// nn.Dropout.
    Dropout {
        /// Drop probability.
        p: f64,
    },
    /// nn.Flatten: a module, so torchsummary lists it.
    Flatten,
    /// `x.view(n, -1)` / `torch.flatten(x, 1)`: a function call, so torchsummary does not list it.
    View,
    /// nn.Linear; `in_features` is inferred.
    Linear {
        /// Output features.
        out_features: usize,
        /// Whether the layer has a bias.
        bias: bool,
    },
    /// nn.Sequential: runs its children in order; not listed by torchsummary.
    Sequential(Vec<Node>),
    /// A residual block: `activation(body(x) + shortcut(x))`, listed as one `class_name` row after its children.
    Residual {
        /// Class name shown in the summary (`ResBlock` for the seed's ResNet).
        class_name: String,
        /// The main path.
        body: Vec<Node>,
        /// The projection path (an nn.Sequential named e.g. `downsample`); identity when absent.
        shortcut: Option<Box<Node>>,
        /// Applied after the addition (the seed's block reuses its `relu` module here).
        activation: Option<Box<Node>>,
    },
}

/// A named layer with the YAML location it was declared at (for errors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// state_dict path segment.
    pub name: String,
    /// What the layer does.
    pub op: Op,
    /// 1-based line in the pipeline file, when the layer came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

impl Node {
    /// A node without a source location.
    pub fn new(name: impl Into<String>, op: Op) -> Self {
        Node {
            name: name.into(),
            op,
            line: None,
        }
    }
}

/// A whole model: its class name, input shape and top-level layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDecl {
    /// Class name (`SimpleCNN`, `ResNet18`, or the pipeline's name for `layers:` models).
    pub class_name: String,
    /// Input shape `[C, H, W]`.
    pub input: Shape,
    /// Top-level layers, run in order.
    pub layers: Vec<Node>,
}

/// Why a declared model cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("layer `{path}` ({kind}): {message}")]
pub struct ShapeError {
    /// Dotted state_dict path of the layer.
    pub path: String,
    /// Layer type.
    pub kind: String,
    /// What is wrong, with the shapes involved.
    pub message: String,
    /// YAML line of the layer, when known.
    pub line: Option<usize>,
}

/// What a tensor of a parameter or buffer is, as PyTorch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TensorRole {
    /// Trainable weight.
    Weight,
    /// Trainable bias.
    Bias,
    /// BatchNorm running mean buffer.
    RunningMean,
    /// BatchNorm running variance buffer.
    RunningVar,
    /// BatchNorm step counter buffer (int64 in PyTorch).
    NumBatchesTracked,
}

impl TensorRole {
    /// The state_dict suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            TensorRole::Weight => "weight",
            TensorRole::Bias => "bias",
            TensorRole::RunningMean => "running_mean",
            TensorRole::RunningVar => "running_var",
            TensorRole::NumBatchesTracked => "num_batches_tracked",
        }
    }

    /// True for tensors the optimizer updates.
    pub fn trainable(self) -> bool {
        matches!(self, TensorRole::Weight | TensorRole::Bias)
    }
}

/// One state_dict entry of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorDecl {
    /// Full state_dict name, e.g. `layer1.0.bn1.running_mean`.
    pub name: String,
    /// Shape (empty for the scalar `num_batches_tracked`).
    pub shape: Vec<usize>,
    /// What it is.
    pub role: TensorRole,
    /// Fan-in of the owning layer (for PyTorch's default initialisation).
    pub fan_in: usize,
}

impl Op {
    /// PyTorch class name of the layer, as torchsummary prints it.
    pub fn type_name(&self) -> &str {
        match self {
            Op::Conv2d { .. } => "Conv2d",
            Op::BatchNorm2d => "BatchNorm2d",
            Op::Relu => "ReLU",
            Op::LeakyRelu { .. } => "LeakyReLU",
            Op::Gelu => "GELU",
            Op::MaxPool2d(_) => "MaxPool2d",
            Op::AvgPool2d(_) => "AvgPool2d",
            Op::AdaptiveAvgPool2d { .. } => "AdaptiveAvgPool2d",
            Op::Dropout { .. } => "Dropout",
            Op::Flatten => "Flatten",
            Op::View => "view",
            Op::Linear { .. } => "Linear",
            Op::Sequential(_) => "Sequential",
            Op::Residual { class_name, .. } => class_name,
        }
    }
}

/// A state_dict path as PyTorch writes it: `prefix.name`, either part possibly empty (`layer1.0.conv1`).
pub fn state_dict_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else if name.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn pooled(side: usize, w: &Window) -> Option<usize> {
    let padded = side + 2 * w.padding;
    if w.kernel == 0 || w.stride == 0 || padded < w.kernel {
        return None;
    }
    Some((padded - w.kernel) / w.stride + 1)
}

/// A visitor over the layers in execution order, with each layer's input and output shapes.
pub trait Visit {
    /// Called for each leaf layer and, after its children, for each Residual.
    fn layer(&mut self, path: &str, node: &Node, input: &Shape, output: &Shape);
}

impl ModelDecl {
    /// Walk every layer in forward order, checking shapes; returns the output shape.
    pub fn walk(&self, visitor: &mut dyn Visit) -> Result<Shape, ShapeError> {
        walk_seq(&self.layers, "", self.input.clone(), visitor)
    }

    /// The output shape, or the first layer whose shapes cannot work.
    pub fn output_shape(&self) -> Result<Shape, ShapeError> {
        struct Nop;
        impl Visit for Nop {
            fn layer(&mut self, _: &str, _: &Node, _: &Shape, _: &Shape) {}
        }
        self.walk(&mut Nop)
    }

    /// Every state_dict entry, in PyTorch's registration order.
    pub fn tensors(&self) -> Result<Vec<TensorDecl>, ShapeError> {
        struct Collect(Vec<TensorDecl>);
        impl Visit for Collect {
            fn layer(&mut self, path: &str, node: &Node, input: &Shape, output: &Shape) {
                let mut push = |role: TensorRole, shape: Vec<usize>, fan_in: usize| {
                    self.0.push(TensorDecl {
                        name: state_dict_path(path, role.suffix()),
                        shape,
                        role,
                        fan_in,
                    })
                };
                match &node.op {
                    Op::Conv2d {
                        out_channels,
                        kernel,
                        bias,
                        ..
                    } => {
                        let fan_in = input[0] * kernel * kernel;
                        push(
                            TensorRole::Weight,
                            vec![*out_channels, input[0], *kernel, *kernel],
                            fan_in,
                        );
                        if *bias {
                            push(TensorRole::Bias, vec![*out_channels], fan_in);
                        }
                    }
                    Op::Linear { out_features, bias } => {
                        let fan_in = input[0];
                        push(TensorRole::Weight, vec![*out_features, fan_in], fan_in);
                        if *bias {
                            push(TensorRole::Bias, vec![*out_features], fan_in);
                        }
                    }
                    Op::BatchNorm2d => {
                        let c = output[0];
                        push(TensorRole::Weight, vec![c], c);
                        push(TensorRole::Bias, vec![c], c);
                        push(TensorRole::RunningMean, vec![c], c);
                        push(TensorRole::RunningVar, vec![c], c);
                        push(TensorRole::NumBatchesTracked, vec![], c);
                    }
                    _ => {}
                }
            }
        }
        let mut c = Collect(Vec::new());
        self.walk(&mut c)?;
        // PyTorch registers a residual block's submodules in attribute order (conv1, bn1, relu, conv2, bn2,
        // downsample), which is also forward order here, so no reordering is needed.
        Ok(c.0)
    }

    /// Number of trainable parameters.
    pub fn param_count(&self) -> Result<usize, ShapeError> {
        Ok(self
            .tensors()?
            .iter()
            .filter(|t| t.role.trainable())
            .map(|t| t.shape.iter().product::<usize>())
            .sum())
    }
}

fn walk_seq(nodes: &[Node], prefix: &str, mut shape: Shape, v: &mut dyn Visit) -> Result<Shape, ShapeError> {
    for n in nodes {
        shape = walk_node(n, prefix, shape, v)?;
    }
    Ok(shape)
}

fn walk_node(node: &Node, prefix: &str, input: Shape, v: &mut dyn Visit) -> Result<Shape, ShapeError> {
    let path = state_dict_path(prefix, &node.name);
    let err = |message: String| ShapeError {
        path: path.clone(),
        kind: node.op.type_name().to_string(),
        message,
        line: node.line,
    };
    let need_image = |input: &Shape| -> Result<(usize, usize, usize), ShapeError> {
        match input.as_slice() {
            [c, h, w] => Ok((*c, *h, *w)),
            _ => Err(err(format!(
                "expects an image tensor [C, H, W] but gets {}; put it before `flatten`",
                fmt_shape(input)
            ))),
        }
    };
    let output = match &node.op {
        Op::Conv2d {
            out_channels,
            kernel,
            stride,
            padding,
            ..
        } => {
            let (_, h, w) = need_image(&input)?;
            let win = Window {
                kernel: *kernel,
                stride: *stride,
                padding: *padding,
            };
            match (pooled(h, &win), pooled(w, &win)) {
                (Some(oh), Some(ow)) if *out_channels > 0 => vec![*out_channels, oh, ow],
                _ => {
                    return Err(err(format!(
                        "kernel {kernel} with stride {stride} and padding {padding} does not fit input {}",
                        fmt_shape(&input)
                    )));
                }
            }
        }
        Op::MaxPool2d(win) | Op::AvgPool2d(win) => {
            let (c, h, w) = need_image(&input)?;
            if win.padding * 2 > win.kernel {
                return Err(err(format!(
                    "padding {} is more than half the kernel {} (PyTorch refuses this too)",
                    win.padding, win.kernel
                )));
            }
            match (pooled(h, win), pooled(w, win)) {
                (Some(oh), Some(ow)) => vec![c, oh, ow],
                _ => {
                    return Err(err(format!(
                        "kernel {} with stride {} and padding {} does not fit input {}",
                        win.kernel,
                        win.stride,
                        win.padding,
                        fmt_shape(&input)
                    )));
                }
            }
        }
        Op::AdaptiveAvgPool2d { output } => {
            let (c, h, w) = need_image(&input)?;
            // Any size works, as in PyTorch: windows that do not tile the input overlap or repeat inputs.
            if *output == 0 || h == 0 || w == 0 {
                return Err(err(format!(
                    "output {output}×{output} and the input's spatial size in {} must be at least 1",
                    fmt_shape(&input)
                )));
            }
            vec![c, *output, *output]
        }
        Op::BatchNorm2d => {
            need_image(&input)?;
            input.clone()
        }
        Op::Relu | Op::LeakyRelu { .. } | Op::Gelu | Op::Dropout { .. } => input.clone(),
        Op::Flatten | Op::View => vec![input.iter().product()],
        Op::Linear { out_features, .. } => {
            if input.len() != 1 {
                return Err(err(format!(
                    "expects features [F] but gets {}; add `flatten` before it",
                    fmt_shape(&input)
                )));
            }
            vec![*out_features]
        }
        Op::Sequential(children) => return walk_seq(children, &path, input, v),
        Op::Residual {
            body,
            shortcut,
            activation,
            ..
        } => {
            let main = walk_seq(body, &path, input.clone(), v)?;
            let side = match shortcut {
                Some(s) => walk_node(s, &path, input.clone(), v)?,
                None => input.clone(),
            };
            if main != side {
                return Err(err(format!(
                    "body gives {} but the shortcut gives {}; they must match to be added{}",
                    fmt_shape(&main),
                    fmt_shape(&side),
                    if shortcut.is_none() {
                        " (add a `shortcut` with a 1×1 conv)"
                    } else {
                        ""
                    }
                )));
            }
            let out = match activation {
                Some(a) => walk_node(a, &path, main, v)?,
                None => main,
            };
            v.layer(&path, node, &input, &out);
            return Ok(out);
        }
    };
    v.layer(&path, node, &input, &output);
    Ok(output)
}

/// `[C, H, W]` as text.
pub fn fmt_shape(s: &Shape) -> String {
    format!(
        "[{}]",
        s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pooled_to(input: Shape, output: usize) -> Result<Shape, ShapeError> {
        ModelDecl {
            class_name: "Pool".into(),
            input,
            layers: vec![Node::new("gap", Op::AdaptiveAvgPool2d { output })],
        }
        .output_shape()
    }

    #[test]
    fn adaptive_pool_takes_any_output_size_as_pytorch_does() {
        assert_eq!(pooled_to(vec![4, 8, 8], 7), Ok(vec![4, 7, 7]));
        assert_eq!(pooled_to(vec![2, 5, 5], 3), Ok(vec![2, 3, 3]));
        assert_eq!(pooled_to(vec![2, 3, 3], 5), Ok(vec![2, 5, 5]));
        assert!(pooled_to(vec![4, 8, 8], 0).is_err());
        assert!(pooled_to(vec![16], 2).is_err());
    }
}
