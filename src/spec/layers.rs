//! `model.layers`: the user's own network as a list of layer declarations, turned into the model IR.
//!
//! Each entry is `- relu` or `- conv2d: {out_channels: 32, kernel: 3, padding: 1}`; channel and feature counts
//! are inferred from the input, so nobody writes `in_channels`.

use crate::model::decl::{Node, Op, Window};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// conv2d parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Conv2dSpec {
    /// Output channels.
    pub out_channels: usize,
    /// Square kernel side.
    pub kernel: usize,
    /// Stride (default 1).
    #[serde(default = "one")]
    pub stride: usize,
    /// Zero padding (default 0).
    #[serde(default)]
    pub padding: usize,
    /// Bias (default true, as nn.Conv2d).
    #[serde(default = "yes")]
    pub bias: bool,
    /// state_dict name (default: the index in its list).
    #[serde(default)]
    pub name: Option<String>,
}

/// max_pool2d / avg_pool2d parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// Square window side.
    pub kernel: usize,
    /// Stride (default: the kernel, as PyTorch).
    #[serde(default)]
    pub stride: Option<usize>,
    /// Padding (default 0).
    #[serde(default)]
    pub padding: usize,
    /// state_dict name.
    #[serde(default)]
    pub name: Option<String>,
}

/// linear parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinearSpec {
    /// Output features.
    pub out_features: usize,
    /// Bias (default true).
    #[serde(default = "yes")]
    pub bias: bool,
    /// state_dict name.
    #[serde(default)]
    pub name: Option<String>,
}

/// Parameters of layers that have at most a name and one number.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SimpleSpec {
    /// state_dict name.
    #[serde(default)]
    pub name: Option<String>,
    /// dropout: probability (default 0.5); leaky_relu: negative slope (default 0.01).
    #[serde(default)]
    pub p: Option<f64>,
    /// leaky_relu: negative slope (default 0.01).
    #[serde(default)]
    pub negative_slope: Option<f64>,
    /// adaptive_avg_pool2d: output side (default 1).
    #[serde(default)]
    pub output: Option<usize>,
}

/// A residual block: `activation(body(x) + shortcut(x))`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResidualSpec {
    /// Main path.
    pub body: Vec<LayerSpec>,
    /// Projection path; identity when absent.
    #[serde(default)]
    pub shortcut: Option<Vec<LayerSpec>>,
    /// Applied after the addition (e.g. `relu`).
    #[serde(default)]
    pub activation: Option<Box<LayerSpec>>,
    /// state_dict name.
    #[serde(default)]
    pub name: Option<String>,
}

/// One entry of `model.layers`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerSpec {
    /// nn.Conv2d.
    Conv2d(Conv2dSpec),
    /// nn.BatchNorm2d.
    BatchNorm2d(SimpleSpec),
    /// nn.ReLU.
    Relu(SimpleSpec),
    /// nn.LeakyReLU.
    LeakyRelu(SimpleSpec),
    /// nn.GELU.
    Gelu(SimpleSpec),
    /// nn.MaxPool2d.
    MaxPool2d(PoolSpec),
    /// nn.AvgPool2d.
    AvgPool2d(PoolSpec),
    /// nn.AdaptiveAvgPool2d.
    AdaptiveAvgPool2d(SimpleSpec),
    /// nn.Dropout.
    Dropout(SimpleSpec),
    /// nn.Flatten.
    Flatten(SimpleSpec),
    /// `x.view(n, -1)`: flattens without a module (torchsummary shows no row), as the seed's SimpleCNN does.
    View(SimpleSpec),
    /// nn.Linear.
    Linear(LinearSpec),
    /// A residual block.
    Residual(ResidualSpec),
}

/// The layer kinds, as written in YAML.
pub const LAYER_KINDS: &[&str] = &[
    "conv2d",
    "batch_norm2d",
    "relu",
    "leaky_relu",
    "gelu",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "dropout",
    "flatten",
    "view",
    "linear",
    "residual",
];

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}

struct LayerVisitor;

impl<'de> Visitor<'de> for LayerVisitor {
    type Value = LayerSpec;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a layer such as `relu` or `conv2d: {out_channels: 32, kernel: 3}`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<LayerSpec, E> {
        let s = SimpleSpec::default();
        Ok(match v {
            "batch_norm2d" => LayerSpec::BatchNorm2d(s),
            "relu" => LayerSpec::Relu(s),
            "leaky_relu" => LayerSpec::LeakyRelu(s),
            "gelu" => LayerSpec::Gelu(s),
            "adaptive_avg_pool2d" => LayerSpec::AdaptiveAvgPool2d(s),
            "dropout" => LayerSpec::Dropout(s),
            "flatten" => LayerSpec::Flatten(s),
            "view" => LayerSpec::View(s),
            "conv2d" => {
                return Err(E::custom(
                    "`conv2d` needs parameters: `conv2d: {out_channels: N, kernel: K}`",
                ));
            }
            "linear" => {
                return Err(E::custom(
                    "`linear` needs parameters: `linear: {out_features: N}`",
                ));
            }
            "max_pool2d" | "avg_pool2d" => {
                return Err(E::custom(format!("`{v}` needs parameters: `{v}: {{kernel: K}}`")));
            }
            "residual" => {
                return Err(E::custom(
                    "`residual` needs parameters: `residual: {body: [...]}`",
                ));
            }
            other => return Err(E::unknown_variant(other, LAYER_KINDS)),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LayerSpec, A::Error> {
        let Some(kind) = map.next_key::<String>()? else {
            return Err(de::Error::custom(
                "empty layer: write e.g. `relu` or `conv2d: {...}`",
            ));
        };
        let simple = |v: Option<SimpleSpec>| v.unwrap_or_default();
        let layer = match kind.as_str() {
            "conv2d" => LayerSpec::Conv2d(map.next_value()?),
            "batch_norm2d" => LayerSpec::BatchNorm2d(simple(map.next_value()?)),
            "relu" => LayerSpec::Relu(simple(map.next_value()?)),
            "leaky_relu" => LayerSpec::LeakyRelu(simple(map.next_value()?)),
            "gelu" => LayerSpec::Gelu(simple(map.next_value()?)),
            "max_pool2d" => LayerSpec::MaxPool2d(map.next_value()?),
            "avg_pool2d" => LayerSpec::AvgPool2d(map.next_value()?),
            "adaptive_avg_pool2d" => LayerSpec::AdaptiveAvgPool2d(simple(map.next_value()?)),
            "dropout" => LayerSpec::Dropout(simple(map.next_value()?)),
            "flatten" => LayerSpec::Flatten(simple(map.next_value()?)),
            "view" => LayerSpec::View(simple(map.next_value()?)),
            "linear" => LayerSpec::Linear(map.next_value()?),
            "residual" => LayerSpec::Residual(map.next_value()?),
            other => return Err(de::Error::unknown_variant(other, LAYER_KINDS)),
        };
        if let Some(extra) = map.next_key::<String>()? {
            return Err(de::Error::custom(format!(
                "one layer per list entry: found `{extra}` beside `{kind}`; start a new entry with `- {extra}`"
            )));
        }
        Ok(layer)
    }
}

impl<'de> Deserialize<'de> for LayerSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LayerVisitor)
    }
}

/// A layer whose parameters make no sense, found while converting (its list index path, message).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerError {
    /// Dotted path under `model.layers`, e.g. `3` or `5.residual.body.1`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn check_positive(path: &str, field: &str, v: usize) -> Result<(), LayerError> {
    if v == 0 {
        Err(LayerError {
            path: format!("{path}.{field}"),
            message: format!("`{field}` must be at least 1"),
        })
    } else {
        Ok(())
    }
}

fn prob(path: &str, field: &str, p: f64) -> Result<f64, LayerError> {
    if (0.0..1.0).contains(&p) {
        Ok(p)
    } else {
        Err(LayerError {
            path: format!("{path}.{field}"),
            message: format!("`{field}` must be in [0, 1), got {p}"),
        })
    }
}

/// Convert the declared list to IR nodes; `path` is the dotted location prefix (for errors), `line_of` maps a
/// dotted path under `model.layers` to its YAML line.
pub fn to_nodes(
    specs: &[LayerSpec],
    path: &str,
    line_of: &dyn Fn(&str) -> Option<usize>,
) -> Result<Vec<Node>, LayerError> {
    let item_path = |i: usize| {
        if path.is_empty() {
            i.to_string()
        } else {
            format!("{path}.{i}")
        }
    };
    let nodes = specs
        .iter()
        .enumerate()
        .map(|(i, s)| to_node(s, &item_path(i), i, line_of))
        .collect::<Result<Vec<Node>, LayerError>>()?;
    // Where each layer's name is written (its `name:` field, else the entry), for the messages below.
    let name_path = |i: usize| match specs[i].name() {
        Some(_) => format!("{}.{}.name", item_path(i), specs[i].kind()),
        None => item_path(i),
    };
    for (i, spec) in specs.iter().enumerate() {
        if let Some(n) = spec.name() {
            check_layer_name(n).map_err(|message| LayerError {
                path: name_path(i),
                message,
            })?;
        }
    }
    for (j, b) in nodes.iter().enumerate() {
        // A `view` owns no module and takes no name.
        if b.name.is_empty() {
            continue;
        }
        if let Some(i) = nodes[..j].iter().position(|a| a.name == b.name) {
            let first = line_of(&name_path(i))
                .map(|l| format!("line {l}"))
                .unwrap_or_else(|| format!("entry {i}"));
            let how = if specs[j].name().is_some() && specs[i].name().is_none() {
                format!(" (the {} entry's default name is its index)", ordinal(i))
            } else {
                String::new()
            };
            return Err(LayerError {
                path: name_path(j),
                message: format!(
                    "layer name `{}` is used twice in the same list: also at {first}{how}; each layer's parameters \
                     are named after it (`{}.weight`), so names must differ",
                    b.name, b.name
                ),
            });
        }
    }
    Ok(nodes)
}

fn ordinal(i: usize) -> String {
    match i {
        0 => "first".into(),
        1 => "second".into(),
        2 => "third".into(),
        n => format!("{}th", n + 1),
    }
}

/// PyTorch's rule for module names: not empty, no `.` (it separates the levels of state_dict names).
fn check_layer_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a layer name cannot be empty".into());
    }
    if name.contains('.') {
        return Err(format!(
            "layer name `{name}` contains `.`, which separates the levels of parameter names (`block.conv.weight`)"
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("layer name {name:?} contains {c:?}"));
    }
    Ok(())
}

impl LayerSpec {
    /// The name the entry gives its layer, if it gives one.
    pub fn name(&self) -> Option<&str> {
        match self {
            LayerSpec::Conv2d(c) => c.name.as_deref(),
            LayerSpec::MaxPool2d(p) | LayerSpec::AvgPool2d(p) => p.name.as_deref(),
            LayerSpec::Linear(l) => l.name.as_deref(),
            LayerSpec::Residual(r) => r.name.as_deref(),
            LayerSpec::View(_) => None,
            LayerSpec::BatchNorm2d(s)
            | LayerSpec::Relu(s)
            | LayerSpec::LeakyRelu(s)
            | LayerSpec::Gelu(s)
            | LayerSpec::AdaptiveAvgPool2d(s)
            | LayerSpec::Dropout(s)
            | LayerSpec::Flatten(s) => s.name.as_deref(),
        }
    }

    /// The kind as written in YAML (`conv2d`).
    pub fn kind(&self) -> &'static str {
        match self {
            LayerSpec::Conv2d(_) => "conv2d",
            LayerSpec::BatchNorm2d(_) => "batch_norm2d",
            LayerSpec::Relu(_) => "relu",
            LayerSpec::LeakyRelu(_) => "leaky_relu",
            LayerSpec::Gelu(_) => "gelu",
            LayerSpec::MaxPool2d(_) => "max_pool2d",
            LayerSpec::AvgPool2d(_) => "avg_pool2d",
            LayerSpec::AdaptiveAvgPool2d(_) => "adaptive_avg_pool2d",
            LayerSpec::Dropout(_) => "dropout",
            LayerSpec::Flatten(_) => "flatten",
            LayerSpec::View(_) => "view",
            LayerSpec::Linear(_) => "linear",
            LayerSpec::Residual(_) => "residual",
        }
    }
}

fn to_node(
    spec: &LayerSpec,
    path: &str,
    index: usize,
    line_of: &dyn Fn(&str) -> Option<usize>,
) -> Result<Node, LayerError> {
    let name_or = |n: &Option<String>| n.clone().unwrap_or_else(|| index.to_string());
    let (name, op) = match spec {
        LayerSpec::Conv2d(c) => {
            check_positive(path, "conv2d.out_channels", c.out_channels)?;
            check_positive(path, "conv2d.kernel", c.kernel)?;
            check_positive(path, "conv2d.stride", c.stride)?;
            (
                name_or(&c.name),
                Op::Conv2d {
                    out_channels: c.out_channels,
                    kernel: c.kernel,
                    stride: c.stride,
                    padding: c.padding,
                    bias: c.bias,
                },
            )
        }
        LayerSpec::BatchNorm2d(s) => (name_or(&s.name), Op::BatchNorm2d),
        LayerSpec::Relu(s) => (name_or(&s.name), Op::Relu),
        LayerSpec::LeakyRelu(s) => (
            name_or(&s.name),
            Op::LeakyRelu {
                negative_slope: s.negative_slope.or(s.p).unwrap_or(0.01),
            },
        ),
        LayerSpec::Gelu(s) => (name_or(&s.name), Op::Gelu),
        LayerSpec::MaxPool2d(p) | LayerSpec::AvgPool2d(p) => {
            let key = if matches!(spec, LayerSpec::MaxPool2d(_)) {
                "max_pool2d"
            } else {
                "avg_pool2d"
            };
            check_positive(path, &format!("{key}.kernel"), p.kernel)?;
            let stride = p.stride.unwrap_or(p.kernel);
            check_positive(path, &format!("{key}.stride"), stride)?;
            let w = Window {
                kernel: p.kernel,
                stride,
                padding: p.padding,
            };
            let op = if key == "max_pool2d" {
                Op::MaxPool2d(w)
            } else {
                Op::AvgPool2d(w)
            };
            (name_or(&p.name), op)
        }
        LayerSpec::AdaptiveAvgPool2d(s) => {
            let output = s.output.unwrap_or(1);
            check_positive(path, "adaptive_avg_pool2d.output", output)?;
            (name_or(&s.name), Op::AdaptiveAvgPool2d { output })
        }
        LayerSpec::Dropout(s) => (
            name_or(&s.name),
            Op::Dropout {
                p: prob(path, "dropout.p", s.p.unwrap_or(0.5))?,
            },
        ),
        LayerSpec::Flatten(s) => (name_or(&s.name), Op::Flatten),
        // A function call owns no parameters, so it never takes a state_dict index.
        LayerSpec::View(_) => (String::new(), Op::View),
        LayerSpec::Linear(l) => {
            check_positive(path, "linear.out_features", l.out_features)?;
            (
                name_or(&l.name),
                Op::Linear {
                    out_features: l.out_features,
                    bias: l.bias,
                },
            )
        }
        LayerSpec::Residual(r) => {
            if r.body.is_empty() {
                return Err(LayerError {
                    path: format!("{path}.residual.body"),
                    message: "a residual block needs at least one layer in `body`".into(),
                });
            }
            let body = to_nodes(&r.body, &format!("{path}.residual.body"), line_of)?;
            let shortcut = match &r.shortcut {
                Some(s) if !s.is_empty() => Some(Box::new(Node {
                    name: "shortcut".into(),
                    op: Op::Sequential(to_nodes(s, &format!("{path}.residual.shortcut"), line_of)?),
                    line: line_of(&format!("{path}.residual.shortcut")),
                })),
                _ => None,
            };
            let activation = match &r.activation {
                Some(a) => {
                    let mut n = to_node(a, &format!("{path}.residual.activation"), 0, line_of)?;
                    n.name = "activation".into();
                    Some(Box::new(n))
                }
                None => None,
            };
            // The shortcut and the activation sit beside the body's layers in parameter names.
            for (taken, present) in [
                ("shortcut", shortcut.is_some()),
                ("activation", activation.is_some()),
            ] {
                if let Some(i) = body.iter().position(|n| present && n.name == taken) {
                    return Err(LayerError {
                        path: format!("{path}.residual.body.{i}"),
                        message: format!(
                            "layer name `{taken}` is used twice in this residual block: its `{taken}` has that name"
                        ),
                    });
                }
            }
            (
                name_or(&r.name),
                Op::Residual {
                    class_name: "Residual".into(),
                    body,
                    shortcut,
                    activation,
                },
            )
        }
    };
    Ok(Node {
        name,
        op,
        line: line_of(path),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        layers: Vec<LayerSpec>,
    }

    #[test]
    fn plain_and_parameterised_entries_parse() {
        let d: Doc = serde_saphyr::from_str(
            "layers:\n  - conv2d: {out_channels: 8, kernel: 3, padding: 1}\n  - relu\n  - max_pool2d: {kernel: 2}\n  - dropout: {p: 0.25}\n  - flatten\n  - linear: {out_features: 10}\n",
        )
        .unwrap();
        let nodes = to_nodes(&d.layers, "", &|_| None).unwrap();
        assert_eq!(nodes.len(), 6);
        assert_eq!(
            nodes[2].op,
            Op::MaxPool2d(Window {
                kernel: 2,
                stride: 2,
                padding: 0
            })
        );
        assert_eq!(nodes[0].name, "0");
    }

    #[test]
    fn unknown_layer_names_the_choices() {
        let e = serde_saphyr::from_str::<Doc>("layers:\n  - conv3d: {out_channels: 3}\n")
            .err()
            .unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains("unknown variant `conv3d`") && msg.contains("conv2d"),
            "{msg}"
        );
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn missing_kernel_is_reported_at_its_line() {
        let e = serde_saphyr::from_str::<Doc>("layers:\n  - relu\n  - conv2d: {out_channels: 3}\n")
            .err()
            .unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains("missing field `kernel`") && msg.contains("line 3"),
            "{msg}"
        );
    }

    #[test]
    fn duplicate_layer_names_are_refused_naming_both_lines() {
        let text = "layers:\n  - conv2d: {out_channels: 4, kernel: 3, name: conv}\n  - relu\n  - conv2d: {out_channels: 4, kernel: 3, name: conv}\n";
        let d: Doc = serde_saphyr::from_str(text).unwrap();
        let ix = crate::spec::locate::LocationIndex::build(text);
        let line_of = |p: &str| ix.find(&format!("layers.{p}")).map(|pos| pos.line);
        let e = to_nodes(&d.layers, "", &line_of).unwrap_err();
        assert_eq!(e.path, "2.conv2d.name");
        assert!(
            e.message.contains("`conv` is used twice") && e.message.contains("also at line 2"),
            "{e:?}"
        );

        // An explicit name equal to another entry's default (its index), inside a residual body too.
        let d: Doc = serde_saphyr::from_str(
            "layers:\n  - residual:\n      body:\n        - conv2d: {out_channels: 3, kernel: 1}\n        - relu: {name: '0'}\n",
        )
        .unwrap();
        let e = to_nodes(&d.layers, "", &|_| None).unwrap_err();
        assert_eq!(e.path, "0.residual.body.1.relu.name");
        assert!(e.message.contains("default name is its index"), "{e:?}");

        for (bad, why) in [("''", "cannot be empty"), ("a.b", "contains `.`")] {
            let d: Doc = serde_saphyr::from_str(&format!(
                "layers:\n  - linear: {{out_features: 3, name: {bad}}}\n"
            ))
            .unwrap();
            let e = to_nodes(&d.layers, "", &|_| None).unwrap_err();
            assert!(e.message.contains(why), "{bad}: {e:?}");
        }
        // Distinct names, and several unnamed views, are fine.
        let d: Doc = serde_saphyr::from_str(
            "layers:\n  - conv2d: {out_channels: 4, kernel: 3, name: a}\n  - view\n  - view\n  - linear: {out_features: 3, name: b}\n",
        )
        .unwrap();
        to_nodes(&d.layers, "", &|_| None).unwrap();
    }

    #[test]
    fn bare_conv_asks_for_parameters() {
        let e = serde_saphyr::from_str::<Doc>("layers:\n  - conv2d\n")
            .err()
            .unwrap();
        assert!(e.to_string().contains("needs parameters"), "{e}");
    }
}
