//! What a model declaration costs: the torchsummary table, thop-convention FLOPs and the model diagram.
//!
//! Everything is derived from the same [`ModelDecl`] that trains, so the seed report's "model summary" and
//! "FLOPs" figures reproduce PyTorch's torchsummary 1.5.1 and thop 0.1.1 byte for byte without running a
//! forward pass. The rules (post-order rows, one row per call, MB figures, per-layer MAC formulas) are those
//! of the installed Python sources; `scripts/fixtures/summary_reference.py` regenerates the fixtures the
//! tests compare against.
//!
//! Other tools disagree with thop, mostly by convention, so [`FlopCounts`] carries those conventions too:
//! * `flops_2x_macs`: one multiply-add counted as two floating-point operations (fvcore-style "FLOPs").
//! * `macs_conv_linear_only`: thop without BatchNorm and pooling terms (what hand calculations give).
//! * `torchinfo_mult_adds`: torchinfo 1.8's "Total mult-adds". For every leaf-module call it adds, per
//!   parameter tensor named `weight` or `bias`, `numel × N × H_out × W_out` for convolutions and `numel × N`
//!   for everything else (Linear, BatchNorm). So a conv's bias counts, BatchNorm counts its 2·C affine
//!   parameters once per sample, pooling counts nothing. Checked against torchinfo 1.8.0 on all fixtures.

pub mod diagram;
mod rules;
pub mod table;

use serde::{Deserialize, Serialize};

use crate::model::decl::{ModelDecl, Node, Op, Shape, ShapeError, Visit};

pub use table::{render_seed_text, render_torchsummary};

/// One torchsummary row: one call of one module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// torchsummary's key, `{ClassName}-{row number}` (e.g. `Conv2d-1`).
    pub name: String,
    /// PyTorch class name (`Conv2d`, `ResBlock`, ...).
    pub type_name: String,
    /// Dotted state_dict path of the module (`layer1.0.conv1`).
    pub path: String,
    /// Output shape without the batch dimension.
    pub output_shape: Vec<usize>,
    /// torchsummary's "Param #": numel of `weight` plus `bias`, for this call.
    pub params: usize,
}

/// MAC counts under several conventions, all for batch size 1 (as thop is run in the seed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlopCounts {
    /// thop 0.1.1's `total_ops`: multiply-accumulates, printed by the seed as "FLOPs".
    pub thop_macs: u64,
    /// thop 0.1.1's `total_params`: parameters of modules thop has a rule for, each module once.
    pub thop_params: u64,
    /// Twice thop's MACs: one multiply plus one add per MAC.
    pub flops_2x_macs: u64,
    /// thop's MACs of Conv2d and Linear only (no BatchNorm or pooling terms).
    pub macs_conv_linear_only: u64,
    /// torchinfo 1.8's "Total mult-adds" (see the module documentation for its rules).
    pub torchinfo_mult_adds: u64,
    /// thop MACs per module (state_dict path), summed over calls, in first-call order.
    pub per_layer: Vec<(String, u64)>,
    /// thop MACs per layer type (`Conv2d`, `BatchNorm2d`, ...), in first-appearance order.
    pub by_kind: Vec<(String, u64)>,
}

impl FlopCounts {
    /// thop MACs of one layer type (0 when the model has none).
    pub fn kind(&self, type_name: &str) -> u64 {
        self.by_kind
            .iter()
            .find(|(k, _)| k == type_name)
            .map_or(0, |(_, n)| *n)
    }
}

/// Everything the seed report shows about a model's size and cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// Model class name.
    pub class_name: String,
    /// Input shape without the batch dimension.
    pub input: Vec<usize>,
    /// torchsummary rows in hook order (post-order, one per call).
    pub rows: Vec<SummaryRow>,
    /// Sum of the rows' Param # (a module called twice counts twice, as in torchsummary).
    pub total_params: usize,
    /// Param # of rows whose module has a trainable `weight`.
    pub trainable_params: usize,
    /// `total_params - trainable_params`.
    pub non_trainable_params: usize,
    /// "Input size (MB)", unrounded.
    pub input_mb: f64,
    /// "Forward/backward pass size (MB)", unrounded.
    pub forward_backward_mb: f64,
    /// "Params size (MB)", unrounded.
    pub params_mb: f64,
    /// "Estimated Total Size (MB)", unrounded.
    pub total_mb: f64,
    /// MAC counts.
    pub flops: FlopCounts,
}

/// One call of a module, as the walk reports it.
struct Call {
    path: String,
    op: Op,
    input: Shape,
    output: Shape,
}

struct Calls(Vec<Call>);

impl Visit for Calls {
    fn layer(&mut self, path: &str, node: &Node, input: &Shape, output: &Shape) {
        // Children are visited on their own; a Residual's row needs only its class name.
        let op = match &node.op {
            Op::Residual { class_name, .. } => Op::Residual {
                class_name: class_name.clone(),
                body: Vec::new(),
                shortcut: None,
                activation: None,
            },
            other => other.clone(),
        };
        self.0.push(Call {
            path: path.to_string(),
            op,
            input: input.clone(),
            output: output.clone(),
        });
    }
}

/// Bytes per value (float32) over bytes per MB, as torchsummary computes its size estimates.
const MB_PER_VALUE: f64 = 4.0 / (1024.0 * 1024.0);

/// Compute the torchsummary table, its totals and the MAC counts of a model.
pub fn summarize(decl: &ModelDecl) -> Result<ModelSummary, ShapeError> {
    let mut calls = Calls(Vec::new());
    decl.walk(&mut calls)?;

    let mut rows = Vec::new();
    let mut trainable_params = 0usize;
    let mut output_values = 0usize;
    let mut thop_macs = 0u64;
    let mut conv_linear = 0u64;
    let mut torchinfo = 0u64;
    let mut per_layer: Vec<(String, u64)> = Vec::new();
    let mut by_kind: Vec<(String, u64)> = Vec::new();
    // thop sets (not adds) a module's parameter count, so a module called twice counts once.
    let mut thop_params_by_module: Vec<(String, u64)> = Vec::new();

    for call in &calls.0 {
        // A functional view is not a module: no row, no hook, no count.
        if matches!(call.op, Op::View) {
            continue;
        }
        let c = rules::count(&call.op, &call.input, &call.output);
        let type_name = call.op.type_name().to_string();
        rows.push(SummaryRow {
            name: format!("{}-{}", type_name, rows.len() + 1),
            type_name: type_name.clone(),
            path: call.path.clone(),
            output_shape: call.output.clone(),
            params: c.summary_params,
        });
        if c.has_weight {
            trainable_params += c.summary_params;
        }
        output_values += call.output.iter().product::<usize>();

        // thop and torchinfo only count leaf modules; a Residual is a container to both.
        if matches!(call.op, Op::Residual { .. }) {
            continue;
        }
        thop_macs += c.thop_macs;
        torchinfo += c.torchinfo_mult_adds;
        if matches!(call.op, Op::Conv2d { .. } | Op::Linear { .. }) {
            conv_linear += c.thop_macs;
        }
        add_to(&mut per_layer, &call.path, c.thop_macs);
        add_to(&mut by_kind, &type_name, c.thop_macs);
        if c.thop_rule && !thop_params_by_module.iter().any(|(p, _)| *p == call.path) {
            thop_params_by_module.push((call.path.clone(), c.module_params as u64));
        }
    }

    let total_params: usize = rows.iter().map(|r| r.params).sum();
    let input_values: usize = decl.input.iter().product();
    let input_mb = input_values as f64 * MB_PER_VALUE;
    // torchsummary: abs(2. * total_output * 4. / 1024**2), the 2 for gradients.
    let forward_backward_mb = 2.0 * output_values as f64 * 4.0 / (1024.0 * 1024.0);
    let params_mb = total_params as f64 * MB_PER_VALUE;
    // Same addition order as torchsummary, so the f64 is bit-identical.
    let total_mb = params_mb + forward_backward_mb + input_mb;

    Ok(ModelSummary {
        class_name: decl.class_name.clone(),
        input: decl.input.clone(),
        rows,
        total_params,
        trainable_params,
        non_trainable_params: total_params - trainable_params,
        input_mb,
        forward_backward_mb,
        params_mb,
        total_mb,
        flops: FlopCounts {
            thop_macs,
            thop_params: thop_params_by_module.iter().map(|(_, n)| n).sum(),
            flops_2x_macs: 2 * thop_macs,
            macs_conv_linear_only: conv_linear,
            torchinfo_mult_adds: torchinfo,
            per_layer,
            by_kind,
        },
    })
}

fn add_to(list: &mut Vec<(String, u64)>, key: &str, n: u64) {
    match list.iter_mut().find(|(k, _)| k == key) {
        Some((_, total)) => *total += n,
        None => list.push((key.to_string(), n)),
    }
}

#[cfg(test)]
pub(crate) mod tests;
