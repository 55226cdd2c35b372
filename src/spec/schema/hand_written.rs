//! JSON Schemas of the types whose `Deserialize` is a hand-written visitor (a count or a fraction, a word or a
//! map, one number or a list): each mirrors what its visitor accepts. They sit together here, beside the tests
//! that hold schema and parser to the same files, so that the config modules keep only a derive line.

use crate::data::augment::{Degrees, EraseValue, Fill, Padding};
use crate::data::config::{Normalize, ValSplit};
use crate::slurm::{MemSize, TimeLimit};
use crate::spec::layers::{Conv2dSpec, LayerSpec, LinearSpec, PoolSpec, ResidualSpec, SimpleSpec};
use crate::train::config::Divergence;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use std::borrow::Cow;

impl JsonSchema for ValSplit {
    fn schema_name() -> Cow<'static, str> {
        "ValSplit".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A count of images (e.g. 5000) or a fraction below 1 (e.g. 0.1).",
            "anyOf": [
                {"type": "integer", "minimum": 1, "description": "This many images."},
                {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "description": "This share of the images."}
            ]
        })
    }
}

impl JsonSchema for Normalize {
    fn schema_name() -> Cow<'static, str> {
        "Normalize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "`none`, `first_image`, `train_mean_std`, or `{mean: [...], std: [...]}` with one value per channel (1 for greyscale, 3 for RGB).",
            "anyOf": [
                {"const": "none", "description": "Pixels scaled to [0, 1] only."},
                {"const": "first_image", "description": "Per-channel mean and std of the first training image (the seed's method)."},
                {"const": "train_mean_std", "description": "Per-channel mean and std over the training split."},
                {"type": "null", "description": "The same as `none`."},
                {
                    "type": "object",
                    "description": "Given per-channel values.",
                    "properties": {
                        "mean": {"description": "Per-channel mean: one value for greyscale images, three for RGB.", "type": "array", "items": {"type": "number"}, "anyOf": [{"minItems": 1, "maxItems": 1}, {"minItems": 3, "maxItems": 3}]},
                        "std": {"description": "Per-channel std (positive): one value for greyscale images, three for RGB.", "type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "anyOf": [{"minItems": 1, "maxItems": 1}, {"minItems": 3, "maxItems": 3}]}
                    },
                    "required": ["mean", "std"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

impl JsonSchema for Divergence {
    fn schema_name() -> Cow<'static, str> {
        "Divergence".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "`{factor: k}`: an epoch whose mean training loss exceeds k × the initial loss has diverged; `none` (or `off`, `false`) keeps only the NaN/infinity check.",
            "anyOf": [
                {
                    "type": "object",
                    "properties": {
                        "factor": {"description": "How many times the initial loss an epoch may reach (> 1; default 10).", "type": "number", "exclusiveMinimum": 1, "default": Divergence::DEFAULT_FACTOR}
                    },
                    "additionalProperties": false
                },
                {"enum": ["none", "off"], "description": "Only a NaN or infinite loss counts as divergence."},
                {"type": "boolean", "description": "`false` is `none`, `true` the default rule."},
                {"type": "null", "description": "The default rule."}
            ]
        })
    }
}

impl JsonSchema for Padding {
    fn schema_name() -> Cow<'static, str> {
        "Padding".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Pixels on each side: one number, `[left/right, top/bottom]` or `[left, top, right, bottom]`.",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": 2},
                {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 4, "maxItems": 4}
            ]
        })
    }
}

impl JsonSchema for Fill {
    fn schema_name() -> Cow<'static, str> {
        "Fill".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let level = json_schema!({"type": "integer", "minimum": 0, "maximum": 255});
        json_schema!({
            "description": "A grey level 0..=255 or an `[r, g, b]` colour of levels 0..=255.",
            "anyOf": [
                level,
                {"type": "array", "items": level, "minItems": 1, "maxItems": 1},
                {"type": "array", "items": level, "minItems": 3, "maxItems": 3}
            ]
        })
    }
}

impl JsonSchema for Degrees {
    fn schema_name() -> Cow<'static, str> {
        "Degrees".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A number of degrees d (meaning [-d, d]) or `[min, max]`.",
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
            ]
        })
    }
}

impl JsonSchema for EraseValue {
    fn schema_name() -> Cow<'static, str> {
        "EraseValue".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A number, an `[r, g, b]` list of numbers or `random` (standard-normal values per element), in normalized units.",
            "anyOf": [
                {"type": "number"},
                {"const": "random"},
                {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 1},
                {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3}
            ]
        })
    }
}

// Patterns are ECMA-262 regular expressions as editors run them: no inline flags such as `(?i)`.
impl JsonSchema for TimeLimit {
    fn schema_name() -> Cow<'static, str> {
        "TimeLimit".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "MINUTES, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (e.g. 90, 2:00:00, 1-12), or UNLIMITED.",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^([0-9]+(:[0-9]+){0,2}|[0-9]+-[0-9]+(:[0-9]+){0,2}|[Uu][Nn][Ll][Ii][Mm][Ii][Tt][Ee][Dd]|[Ii][Nn][Ff][Ii][Nn][Ii][Tt][Ee])$"}
            ]
        })
    }
}

impl JsonSchema for MemSize {
    fn schema_name() -> Cow<'static, str> {
        "MemSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A number of megabytes, or a number with K, M, G or T (e.g. 16G).",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^[0-9]+([KkMmGgTt][Bb]?)?$"}
            ]
        })
    }
}

/// Layers written as a bare word (`- relu`) or with parameters; (YAML name, what it is).
const PARAMETERLESS: &[(&str, &str)] = &[
    ("batch_norm2d", "nn.BatchNorm2d."),
    ("relu", "nn.ReLU."),
    ("leaky_relu", "nn.LeakyReLU (`negative_slope`, default 0.01)."),
    ("gelu", "nn.GELU."),
    (
        "adaptive_avg_pool2d",
        "nn.AdaptiveAvgPool2d (`output`, default 1).",
    ),
    ("dropout", "nn.Dropout (`p`, default 0.5)."),
    ("flatten", "nn.Flatten."),
    (
        "view",
        "`x.view(n, -1)`: flattens without a module (torchsummary shows no row), as the seed's SimpleCNN does.",
    ),
];

impl JsonSchema for LayerSpec {
    fn schema_name() -> Cow<'static, str> {
        "LayerSpec".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let one_key = |name: &str, description: &str, params: Schema| {
            json_schema!({
                "type": "object",
                "description": description,
                "properties": {name: params},
                "required": [name],
                "additionalProperties": false
            })
        };
        let simple = generator.subschema_for::<Option<SimpleSpec>>();
        let mut variants: Vec<Schema> = vec![json_schema!({
            "description": "A layer without parameters, written as a bare word: `- relu`.",
            "enum": PARAMETERLESS.iter().map(|(name, _)| *name).collect::<Vec<_>>()
        })];
        for (name, description) in PARAMETERLESS {
            variants.push(one_key(name, description, simple.clone()));
        }
        variants.push(one_key(
            "conv2d",
            "nn.Conv2d.",
            generator.subschema_for::<Conv2dSpec>(),
        ));
        variants.push(one_key(
            "max_pool2d",
            "nn.MaxPool2d.",
            generator.subschema_for::<PoolSpec>(),
        ));
        variants.push(one_key(
            "avg_pool2d",
            "nn.AvgPool2d.",
            generator.subschema_for::<PoolSpec>(),
        ));
        variants.push(one_key(
            "linear",
            "nn.Linear.",
            generator.subschema_for::<LinearSpec>(),
        ));
        variants.push(one_key(
            "residual",
            "A residual block: `activation(body(x) + shortcut(x))`.",
            generator.subschema_for::<ResidualSpec>(),
        ));
        json_schema!({
            "description": "One layer: `- relu` or `- conv2d: {out_channels: 32, kernel: 3, padding: 1}` (one layer per list entry).",
            "oneOf": variants
        })
    }
}
