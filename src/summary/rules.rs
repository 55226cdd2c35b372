//! Per-call counting rules of torchsummary 1.5.1, thop 0.1.1 and torchinfo 1.8, for batch size 1.

use crate::model::decl::{Op, Shape};

/// What one call of one module contributes to each tool's totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counts {
    /// torchsummary's Param #: numel of `weight` plus `bias` (other parameters are ignored there).
    pub summary_params: usize,
    /// Whether the module has a `weight` attribute (torchsummary's "trainable" test).
    pub has_weight: bool,
    /// Every parameter of the module (what thop counts for a rule-bearing module).
    pub module_params: usize,
    /// Whether thop 0.1.1 has a rule for this exact module type; without one it counts 0 ops and 0 params.
    pub thop_rule: bool,
    /// thop's ops for this call.
    pub thop_macs: u64,
    /// torchinfo's mult-adds for this call.
    pub torchinfo_mult_adds: u64,
}

fn numel(s: &Shape) -> u64 {
    s.iter().map(|&d| d as u64).product()
}

/// Spatial positions of an image-shaped output (`H·W`), 1 for features.
fn positions(s: &Shape) -> u64 {
    s.iter().skip(1).map(|&d| d as u64).product()
}

/// Count one call of `op` that maps `input` to `output` (shapes without the batch dimension).
pub(super) fn count(op: &Op, input: &Shape, output: &Shape) -> Counts {
    let zero = Counts {
        summary_params: 0,
        has_weight: false,
        module_params: 0,
        thop_rule: false,
        thop_macs: 0,
        torchinfo_mult_adds: 0,
    };
    let in_channels = input.first().copied().unwrap_or(0);
    match op {
        Op::Conv2d {
            out_channels,
            kernel,
            bias,
            ..
        } => {
            let weight = out_channels * in_channels * kernel * kernel;
            let params = weight + if *bias { *out_channels } else { 0 };
            Counts {
                summary_params: params,
                has_weight: true,
                module_params: params,
                thop_rule: true,
                // thop: y.numel() * (C_in / groups) * kH * kW, with no bias term even when there is a bias.
                thop_macs: numel(output) * (in_channels * kernel * kernel) as u64,
                // torchinfo ignores C_out of the output: params × N × H_out × W_out.
                torchinfo_mult_adds: params as u64 * positions(output),
            }
        }
        Op::Linear { out_features, bias } => {
            let params = in_channels * out_features + if *bias { *out_features } else { 0 };
            Counts {
                summary_params: params,
                has_weight: true,
                module_params: params,
                thop_rule: true,
                // thop: in_features * y.numel(), no bias term.
                thop_macs: in_channels as u64 * numel(output),
                // torchinfo: params × N for a non-conv layer with a 2-D output.
                torchinfo_mult_adds: params as u64,
            }
        }
        Op::BatchNorm2d => {
            let params = 2 * in_channels;
            Counts {
                summary_params: params,
                has_weight: true,
                module_params: params,
                thop_rule: true,
                // thop: 2·x.numel(), doubled because BatchNorm is affine.
                thop_macs: 4 * numel(input),
                torchinfo_mult_adds: params as u64,
            }
        }
        Op::AvgPool2d(_) => Counts {
            thop_rule: true,
            thop_macs: numel(output),
            ..zero
        },
        Op::AdaptiveAvgPool2d { output: side } => {
            // thop: int((prod(in_spatial / out_spatial) + 1) * y.numel()), computed in float64; a size that
            // does not divide the input gives a fractional kernel (8 → 7: (8/7)²), not PyTorch's windows.
            let o = *side as f64;
            let kernel: f64 = input.iter().skip(1).map(|&d| d as f64 / o).product();
            Counts {
                thop_rule: true,
                thop_macs: ((kernel + 1.0) * numel(output) as f64) as u64,
                ..zero
            }
        }
        // Rule-bearing modules thop counts as zero ops (LeakyReLU's rule also returns 0 in 0.1.1).
        Op::Relu | Op::LeakyRelu { .. } | Op::MaxPool2d(_) | Op::Dropout { .. } => Counts {
            thop_rule: true,
            ..zero
        },
        // No thop rule: GELU, Flatten, functional view and custom containers count nothing.
        Op::Gelu | Op::Flatten | Op::View | Op::Sequential(_) | Op::Residual { .. } => zero,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decl::{ModelDecl, Window};
    use crate::spec::layers::{LayerSpec, to_nodes};
    use crate::summary::{render_seed_text, summarize};

    #[test]
    fn conv_with_bias_counts_bias_in_params_but_not_in_thop_macs() {
        let op = Op::Conv2d {
            out_channels: 32,
            kernel: 3,
            stride: 1,
            padding: 1,
            bias: true,
        };
        let c = count(&op, &vec![3, 32, 32], &vec![32, 32, 32]);
        assert_eq!(c.summary_params, 896);
        assert_eq!(c.thop_macs, 32 * 32 * 32 * 27);
        assert_eq!(c.torchinfo_mult_adds, 896 * 1024);
    }

    #[test]
    fn adaptive_avg_pool_uses_thops_kernel_plus_one() {
        let op = Op::AdaptiveAvgPool2d { output: 1 };
        assert_eq!(count(&op, &vec![512, 1, 1], &vec![512, 1, 1]).thop_macs, 1024);
        let op = Op::AdaptiveAvgPool2d { output: 2 };
        // kernel 4×4 = 16 inputs per output, plus one division: 17 × 128.
        assert_eq!(count(&op, &vec![32, 8, 8], &vec![32, 2, 2]).thop_macs, 17 * 128);
        let op = Op::AdaptiveAvgPool2d { output: 7 };
        // int(((8/7)² + 1) · 196) = int(451.99...).
        assert_eq!(count(&op, &vec![4, 8, 8], &vec![4, 7, 7]).thop_macs, 451);
    }

    /// A `layers:` model pooling 8×8 to 7×7 and 5×5 to 3×3 against torchsummary 1.5.1, thop 0.1.1 and
    /// torchinfo 1.8 (tests/fixtures/adaptive_pool, made by scripts/fixtures/adaptive_pool_fixtures.py).
    #[test]
    fn adaptive_avg_pool_to_a_non_dividing_size_matches_pytorch() {
        let yaml = "- conv2d: {out_channels: 4, kernel: 3, padding: 1}
- relu
- adaptive_avg_pool2d: {output: 7}
- conv2d: {out_channels: 6, kernel: 3}
- adaptive_avg_pool2d: {output: 3}
- flatten
- linear: {out_features: 10}
";
        let specs: Vec<LayerSpec> = serde_saphyr::from_str(yaml).expect("layers parse");
        let decl = ModelDecl {
            class_name: "Sequential".into(),
            input: vec![3, 8, 8],
            layers: to_nodes(&specs, "", &|_| None).expect("valid layers"),
        };
        let s = summarize(&decl).expect("8×8 → 7×7 is a valid pooling");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adaptive_pool");
        let text = std::fs::read_to_string(dir.join("summary.txt")).expect("summary.txt");
        assert_eq!(render_seed_text(&s), text);
        #[derive(serde::Deserialize)]
        struct Counts {
            thop_macs: u64,
            thop_params: u64,
            thop_per_layer: Vec<(String, u64)>,
            torchinfo_mult_adds: u64,
        }
        let json = std::fs::read_to_string(dir.join("counts.json")).expect("counts.json");
        let r: Counts = serde_json::from_str(&json).expect("counts.json parses");
        assert_eq!(s.flops.thop_macs, r.thop_macs);
        assert_eq!(s.flops.thop_params, r.thop_params);
        assert_eq!(s.flops.per_layer, r.thop_per_layer);
        assert_eq!(s.flops.torchinfo_mult_adds, r.torchinfo_mult_adds);
        // thop divides the sizes in float64 rather than using PyTorch's windows: (8/7)² + 1 per output.
        assert_eq!(s.flops.kind("AdaptiveAvgPool2d"), 451 + 204);
    }

    #[test]
    fn pools_and_activations() {
        let w = Window {
            kernel: 2,
            stride: 2,
            padding: 0,
        };
        assert_eq!(
            count(&Op::AvgPool2d(w), &vec![4, 8, 8], &vec![4, 4, 4]).thop_macs,
            64
        );
        let max = count(&Op::MaxPool2d(w), &vec![4, 8, 8], &vec![4, 4, 4]);
        assert_eq!((max.thop_macs, max.thop_rule), (0, true));
        let gelu = count(&Op::Gelu, &vec![4], &vec![4]);
        assert!(!gelu.thop_rule);
    }
}
