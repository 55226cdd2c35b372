//! Learning-rate schedules with PyTorch's semantics, as pure functions of the position in training.
//!
//! PyTorch's schedulers are stateful and most compute the next rate from the *current* one (StepLR multiplies
//! the last rate by gamma, CosineAnnealingLR uses a ratio of cosines). Those recursions round differently from
//! the closed forms, so `lr_at` replays the recursion from the start: the rate for any position is then a pure
//! function of the configuration, resume needs no scheduler state, and the float sequence is PyTorch's.

use serde::{Deserialize, Serialize};

use super::optim::FieldProblem;

/// Which schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerKind {
    /// The base learning rate throughout.
    Constant,
    /// torch.optim.lr_scheduler.StepLR: multiply by `gamma` every `step_size` epochs.
    Step,
    /// torch.optim.lr_scheduler.MultiStepLR: multiply by `gamma` at each epoch in `milestones`.
    Multistep,
    /// torch.optim.lr_scheduler.ExponentialLR: multiply by `gamma` every epoch.
    Exponential,
    /// torch.optim.lr_scheduler.CosineAnnealingLR (its recursive form).
    Cosine,
    /// torch.optim.lr_scheduler.OneCycleLR, stepped per batch, with its momentum cycling by default.
    Onecycle,
}

impl SchedulerKind {
    /// The name used in pipeline files.
    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerKind::Constant => "constant",
            SchedulerKind::Step => "step",
            SchedulerKind::Multistep => "multistep",
            SchedulerKind::Exponential => "exponential",
            SchedulerKind::Cosine => "cosine",
            SchedulerKind::Onecycle => "onecycle",
        }
    }
}

/// How OneCycleLR interpolates within a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnnealStrategy {
    /// Half a cosine wave (PyTorch's default, `"cos"`).
    Cos,
    /// A straight line.
    Linear,
}

/// `train.scheduler` in a pipeline file.
///
/// A flat struct rather than a tagged enum so that serde-saphyr keeps line and column in its errors; which
/// fields apply to which `name` is checked by [`SchedulerConfig::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Which schedule.
    pub name: SchedulerKind,
    /// step: epochs between decays (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_size: Option<usize>,
    /// step, multistep (default 0.1), exponential (required): the decay factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f64>,
    /// multistep: the epochs (counted after any warmup) at which the rate is multiplied by `gamma`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub milestones: Option<Vec<usize>>,
    /// cosine: epochs of the half period (default: the epochs after warmup).
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "T_max")]
    pub t_max: Option<usize>,
    /// cosine: the lowest rate (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_min: Option<f64>,
    /// onecycle: the peak rate (default: the optimizer's `lr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lr: Option<f64>,
    /// onecycle: fraction of the steps spent rising (default 0.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pct_start: Option<f64>,
    /// onecycle: `cos` (default) or `linear`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anneal_strategy: Option<AnnealStrategy>,
    /// onecycle: initial rate = max_lr / div_factor (default 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub div_factor: Option<f64>,
    /// onecycle: final rate = initial rate / final_div_factor (default 1e4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_div_factor: Option<f64>,
    /// onecycle: rise, fall back to the initial rate, then anneal (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub three_phase: Option<bool>,
    /// onecycle: cycle the momentum (SGD's `momentum`, Adam's `beta1`) inversely to the rate (default true,
    /// as PyTorch; SGD then gets momentum even when its own is 0, as in PyTorch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle_momentum: Option<bool>,
    /// onecycle: the momentum at the rate's peak (default 0.85).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_momentum: Option<f64>,
    /// onecycle: the momentum at the start and end of the cycle (default 0.95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_momentum: Option<f64>,
    /// Any schedule but onecycle: epochs of linear warmup in front of it (LinearLR + SequentialLR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_epochs: Option<usize>,
    /// Warmup: the factor of the base rate in the first epoch (default 1/3, LinearLR's `start_factor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_start_factor: Option<f64>,
}

/// PyTorch's defaults.
const DEFAULT_GAMMA: f64 = 0.1;
const DEFAULT_PCT_START: f64 = 0.3;
const DEFAULT_DIV_FACTOR: f64 = 25.0;
const DEFAULT_FINAL_DIV_FACTOR: f64 = 1e4;
const DEFAULT_WARMUP_START_FACTOR: f64 = 1.0 / 3.0;
const DEFAULT_BASE_MOMENTUM: f64 = 0.85;
const DEFAULT_MAX_MOMENTUM: f64 = 0.95;

impl SchedulerConfig {
    /// A configuration of `name` with every optional field unset.
    pub fn new(name: SchedulerKind) -> Self {
        SchedulerConfig {
            name,
            step_size: None,
            gamma: None,
            milestones: None,
            t_max: None,
            eta_min: None,
            max_lr: None,
            pct_start: None,
            anneal_strategy: None,
            div_factor: None,
            final_div_factor: None,
            three_phase: None,
            cycle_momentum: None,
            base_momentum: None,
            max_momentum: None,
            warmup_epochs: None,
            warmup_start_factor: None,
        }
    }

    /// The constant schedule.
    pub fn constant() -> Self {
        Self::new(SchedulerKind::Constant)
    }

    /// True when the rate changes every batch (onecycle) rather than every epoch.
    pub fn per_batch(&self) -> bool {
        self.name == SchedulerKind::Onecycle
    }

    /// Every problem with this configuration: fields that do not apply to `name`, missing required fields and
    /// values out of range.
    pub fn problems(&self) -> Vec<FieldProblem> {
        use SchedulerKind::*;
        let mut out = Vec::new();
        let kind = self.name;
        let mut not_for = |field: &'static str, set: bool, allowed: &[SchedulerKind]| {
            if set && !allowed.contains(&kind) {
                let names: Vec<&str> = allowed.iter().map(|k| k.as_str()).collect();
                out.push(FieldProblem::new(
                    field,
                    format!(
                        "`{field}` does not apply to the {} scheduler (it is an option of: {}); remove it",
                        kind.as_str(),
                        names.join(", ")
                    ),
                ));
            }
        };
        not_for("step_size", self.step_size.is_some(), &[Step]);
        not_for("gamma", self.gamma.is_some(), &[Step, Multistep, Exponential]);
        not_for("milestones", self.milestones.is_some(), &[Multistep]);
        not_for("t_max", self.t_max.is_some(), &[Cosine]);
        not_for("eta_min", self.eta_min.is_some(), &[Cosine]);
        not_for("max_lr", self.max_lr.is_some(), &[Onecycle]);
        not_for("pct_start", self.pct_start.is_some(), &[Onecycle]);
        not_for("anneal_strategy", self.anneal_strategy.is_some(), &[Onecycle]);
        not_for("div_factor", self.div_factor.is_some(), &[Onecycle]);
        not_for("final_div_factor", self.final_div_factor.is_some(), &[Onecycle]);
        not_for("three_phase", self.three_phase.is_some(), &[Onecycle]);
        not_for("cycle_momentum", self.cycle_momentum.is_some(), &[Onecycle]);
        not_for("base_momentum", self.base_momentum.is_some(), &[Onecycle]);
        not_for("max_momentum", self.max_momentum.is_some(), &[Onecycle]);
        let warmable = [Constant, Step, Multistep, Exponential, Cosine];
        not_for("warmup_epochs", self.warmup_epochs.is_some(), &warmable);
        not_for(
            "warmup_start_factor",
            self.warmup_start_factor.is_some(),
            &warmable,
        );

        let mut bad = |field: &'static str, message: String| out.push(FieldProblem::new(field, message));
        match kind {
            Step => match self.step_size {
                None => bad(
                    "step_size",
                    "the step scheduler needs `step_size` (epochs between decays)".into(),
                ),
                Some(0) => bad("step_size", "`step_size` must be at least 1".into()),
                Some(_) => {}
            },
            Multistep => match &self.milestones {
                None => bad(
                    "milestones",
                    "the multistep scheduler needs `milestones` (a list of epochs)".into(),
                ),
                Some(m) if m.is_empty() => {
                    bad("milestones", "`milestones` must list at least one epoch".into())
                }
                Some(m) if m.windows(2).any(|w| w[0] > w[1]) => bad(
                    "milestones",
                    format!("`milestones` must be in increasing order, got {m:?}"),
                ),
                Some(_) => {}
            },
            Exponential if self.gamma.is_none() => bad(
                "gamma",
                "the exponential scheduler needs `gamma` (the factor per epoch)".into(),
            ),
            _ => {}
        }
        if let Some(g) = self.gamma
            && !(g.is_finite() && g > 0.0)
        {
            bad("gamma", format!("`gamma` must be a number > 0, got {g}"));
        }
        if self.t_max == Some(0) {
            bad("t_max", "`t_max` must be at least 1".into());
        }
        if let Some(e) = self.eta_min
            && !(e.is_finite() && e >= 0.0)
        {
            bad("eta_min", format!("`eta_min` must be a number >= 0, got {e}"));
        }
        if let Some(m) = self.max_lr
            && !(m.is_finite() && m > 0.0)
        {
            bad("max_lr", format!("`max_lr` must be a number > 0, got {m}"));
        }
        if let Some(p) = self.pct_start {
            let limit = if self.three_phase == Some(true) { 0.5 } else { 1.0 };
            if !(p > 0.0 && p < limit) {
                bad(
                    "pct_start",
                    format!("`pct_start` must be in (0, {limit}), got {p}"),
                );
            }
        }
        for (field, value) in [
            ("div_factor", self.div_factor),
            ("final_div_factor", self.final_div_factor),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && v > 0.0)
            {
                bad(field, format!("`{field}` must be a number > 0, got {v}"));
            }
        }
        for (field, value) in [
            ("base_momentum", self.base_momentum),
            ("max_momentum", self.max_momentum),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && (0.0..1.0).contains(&v))
            {
                bad(field, format!("`{field}` must be in [0, 1), got {v}"));
            }
            if value.is_some() && self.cycle_momentum == Some(false) {
                bad(
                    field,
                    format!("`{field}` has no effect with `cycle_momentum: false`"),
                );
            }
        }
        if let Some(f) = self.warmup_start_factor {
            if !(f > 0.0 && f <= 1.0) {
                bad(
                    "warmup_start_factor",
                    format!("`warmup_start_factor` must be in (0, 1], got {f}"),
                );
            }
            if self.warmup_epochs.is_none() {
                bad(
                    "warmup_start_factor",
                    "`warmup_start_factor` needs `warmup_epochs`".into(),
                );
            }
        }
        out
    }

    /// Check the configuration; the error names the offending field(s) and says what was expected.
    pub fn validate(&self) -> Result<(), String> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; "))
        }
    }

    /// The configuration with every applicable default written out (for cache keys and saved configs).
    /// `t_max` stays unset when absent because its default depends on the number of epochs.
    pub fn resolved(&self) -> SchedulerConfig {
        use SchedulerKind::*;
        let mut r = self.clone();
        match self.name {
            Step | Multistep => r.gamma = Some(self.gamma.unwrap_or(DEFAULT_GAMMA)),
            Cosine => r.eta_min = Some(self.eta_min.unwrap_or(0.0)),
            Onecycle => {
                r.pct_start = Some(self.pct_start.unwrap_or(DEFAULT_PCT_START));
                r.anneal_strategy = Some(self.anneal_strategy.unwrap_or(AnnealStrategy::Cos));
                r.div_factor = Some(self.div_factor.unwrap_or(DEFAULT_DIV_FACTOR));
                r.final_div_factor = Some(self.final_div_factor.unwrap_or(DEFAULT_FINAL_DIV_FACTOR));
                r.three_phase = Some(self.three_phase.unwrap_or(false));
                let cycle = self.cycle_momentum.unwrap_or(true);
                r.cycle_momentum = Some(cycle);
                if cycle {
                    r.base_momentum = Some(self.base_momentum.unwrap_or(DEFAULT_BASE_MOMENTUM));
                    r.max_momentum = Some(self.max_momentum.unwrap_or(DEFAULT_MAX_MOMENTUM));
                }
            }
            Constant | Exponential => {}
        }
        if self.warmup_epochs.unwrap_or(0) > 0 {
            r.warmup_start_factor = Some(self.warmup_start_factor.unwrap_or(DEFAULT_WARMUP_START_FACTOR));
        }
        r
    }

    /// The learning rate for batch `batch` (0-based) of epoch `epoch` (0-based), as PyTorch's scheduler would
    /// have set it with `scheduler.step()` called after every epoch (after every batch for onecycle).
    /// `base_lr` is the optimizer's `lr`. Per-epoch schedules ignore `batch` and `batches_per_epoch`.
    pub fn lr_at(
        &self,
        base_lr: f64,
        epoch: usize,
        batch: usize,
        batches_per_epoch: usize,
        total_epochs: usize,
    ) -> f64 {
        if self.name == SchedulerKind::Onecycle {
            let per_epoch = batches_per_epoch.max(1);
            let total_steps = (total_epochs * per_epoch).max(1);
            return self.one_cycle_lr(base_lr, epoch * per_epoch + batch, total_steps);
        }
        let warmup = self.warmup_epochs.unwrap_or(0);
        if epoch < warmup {
            let start = self.warmup_start_factor.unwrap_or(DEFAULT_WARMUP_START_FACTOR);
            return linear_warmup_lr(base_lr, start, warmup, epoch);
        }
        self.main_lr(
            base_lr,
            epoch - warmup,
            warmup > 0,
            total_epochs.saturating_sub(warmup),
        )
    }

    /// The momentum (SGD's `momentum`, Adam's `beta1`) OneCycleLR sets for batch `batch` of epoch `epoch`, or
    /// `None` when the schedule leaves momentum alone (every schedule but onecycle with `cycle_momentum`).
    pub fn momentum_at(
        &self,
        epoch: usize,
        batch: usize,
        batches_per_epoch: usize,
        total_epochs: usize,
    ) -> Option<f64> {
        if !self.cycles_momentum() {
            return None;
        }
        let per_epoch = batches_per_epoch.max(1);
        let total_steps = (total_epochs * per_epoch).max(1);
        let base = self.base_momentum.unwrap_or(DEFAULT_BASE_MOMENTUM);
        let max = self.max_momentum.unwrap_or(DEFAULT_MAX_MOMENTUM);
        // The momentum runs opposite to the rate: down while it rises, back up while it falls.
        let ends = if self.three_phase.unwrap_or(false) {
            vec![(max, base), (base, max), (max, max)]
        } else {
            vec![(max, base), (base, max)]
        };
        Some(self.one_cycle(epoch * per_epoch + batch, total_steps, &ends))
    }

    /// Whether this schedule drives the optimizer's momentum (onecycle with `cycle_momentum`, the default).
    pub fn cycles_momentum(&self) -> bool {
        self.name == SchedulerKind::Onecycle && self.cycle_momentum.unwrap_or(true)
    }

    /// The momentum the optimizer is built with: OneCycleLR overwrites SGD's `momentum` (and Adam's `beta1`)
    /// with `max_momentum` when it is created.
    pub fn initial_momentum(&self) -> Option<f64> {
        self.cycles_momentum()
            .then(|| self.max_momentum.unwrap_or(DEFAULT_MAX_MOMENTUM))
    }

    /// The rate of the scheduler after warmup at its own 0-based `epoch`. SequentialLR starts a scheduler that
    /// follows another with its closed form at epoch 0 (`_update_lr(0)`), a scheduler that comes first with
    /// its initial step; after that both recurse from the previous rate.
    fn main_lr(&self, base_lr: f64, epoch: usize, after_warmup: bool, epochs: usize) -> f64 {
        use SchedulerKind::*;
        let gamma = self.gamma.unwrap_or(DEFAULT_GAMMA);
        let eta_min = self.eta_min.unwrap_or(0.0);
        let t_max = self.t_max.unwrap_or(epochs).max(1);
        let milestone_count = |e: usize| {
            self.milestones
                .as_deref()
                .map_or(0, |m| m.iter().filter(|&&x| x == e).count())
        };
        let mut lr = match self.name {
            // MultiStepLR's get_lr and closed form agree at epoch 0: a milestone at 0 decays at once.
            Multistep => match milestone_count(0) {
                0 => base_lr,
                n => base_lr * gamma.powf(n as f64),
            },
            Cosine if after_warmup => {
                eta_min
                    + (base_lr - eta_min) * (1.0 + (std::f64::consts::PI * 0.0 / t_max as f64).cos()) / 2.0
            }
            // StepLR and ExponentialLR closed forms at 0 are base_lr * gamma**0 == base_lr exactly.
            _ => base_lr,
        };
        for e in 1..=epoch {
            lr = match self.name {
                Constant => lr,
                Step => {
                    let step = self.step_size.unwrap_or(1).max(1);
                    if e % step == 0 { lr * gamma } else { lr }
                }
                Multistep => match milestone_count(e) {
                    0 => lr,
                    n => lr * gamma.powf(n as f64),
                },
                Exponential => lr * gamma,
                Cosine => cosine_step(lr, base_lr, eta_min, t_max, e),
                Onecycle => lr,
            };
        }
        lr
    }

    /// OneCycleLR's rate after `step` scheduler steps out of `total_steps`.
    fn one_cycle_lr(&self, base_lr: f64, step: usize, total_steps: usize) -> f64 {
        let max_lr = self.max_lr.unwrap_or(base_lr);
        let initial_lr = max_lr / self.div_factor.unwrap_or(DEFAULT_DIV_FACTOR);
        let min_lr = initial_lr / self.final_div_factor.unwrap_or(DEFAULT_FINAL_DIV_FACTOR);
        let ends = if self.three_phase.unwrap_or(false) {
            vec![(initial_lr, max_lr), (max_lr, initial_lr), (initial_lr, min_lr)]
        } else {
            vec![(initial_lr, max_lr), (max_lr, min_lr)]
        };
        self.one_cycle(step, total_steps, &ends)
    }

    /// OneCycleLR's interpolation at `step` of `total_steps` through phases with these (start, end) values.
    fn one_cycle(&self, step: usize, total_steps: usize, ends: &[(f64, f64)]) -> f64 {
        let pct_start = self.pct_start.unwrap_or(DEFAULT_PCT_START);
        let total = total_steps as f64;
        // PyTorch's float end steps of the phases.
        let end_steps: &[f64] = if ends.len() == 3 {
            &[
                pct_start * total - 1.0,
                2.0 * pct_start * total - 2.0,
                total - 1.0,
            ]
        } else {
            &[pct_start * total - 1.0, total - 1.0]
        };
        // PyTorch raises past the last step; a pure function holds the final value instead.
        let step = step.min(total_steps) as f64;
        let mut start_step = 0.0;
        for (i, (&end_step, &(start, end))) in end_steps.iter().zip(ends).enumerate() {
            if step <= end_step || i == ends.len() - 1 {
                let span = end_step - start_step;
                // A zero-length phase is a ZeroDivisionError in PyTorch; take its end point instead.
                let pct = if span == 0.0 {
                    1.0
                } else {
                    (step - start_step) / span
                };
                return match self.anneal_strategy.unwrap_or(AnnealStrategy::Cos) {
                    AnnealStrategy::Cos => {
                        let cos_out = (std::f64::consts::PI * pct).cos() + 1.0;
                        end + (start - end) / 2.0 * cos_out
                    }
                    AnnealStrategy::Linear => (end - start) * pct + start,
                };
            }
            start_step = end_step;
        }
        ends.last().map_or(0.0, |e| e.1)
    }
}

/// LinearLR(start_factor, end_factor=1, total_iters=warmup) at `epoch` < warmup, by its recursive get_lr.
fn linear_warmup_lr(base_lr: f64, start: f64, warmup: usize, epoch: usize) -> f64 {
    let end = 1.0;
    let mut lr = base_lr * start;
    for e in 1..=epoch {
        lr *= 1.0 + (end - start) / (warmup as f64 * start + (e - 1) as f64 * (end - start));
    }
    lr
}

/// One step of CosineAnnealingLR's recursive get_lr, from the rate of epoch `e - 1` to that of epoch `e`.
fn cosine_step(lr: f64, base_lr: f64, eta_min: f64, t_max: usize, e: usize) -> f64 {
    use std::f64::consts::PI;
    let t = t_max as f64;
    // The period restarts where the ratio below would divide by 1 + cos(pi) = 0.
    if (e as i64 - 1 - t_max as i64).rem_euclid(2 * t_max as i64) == 0 {
        lr + (base_lr - eta_min) * (1.0 - (PI / t).cos()) / 2.0
    } else {
        (1.0 + (PI * e as f64 / t).cos()) / (1.0 + (PI * (e - 1) as f64 / t).cos()) * (lr - eta_min) + eta_min
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use candle_core::{Device, Tensor};

    use super::*;

    #[derive(Deserialize)]
    struct Fixture {
        cases: Vec<Case>,
    }

    #[derive(Deserialize)]
    struct Case {
        case: String,
        config: SchedulerConfig,
        base_lr: f64,
        epochs: usize,
        batches_per_epoch: usize,
    }

    /// Every scheduler case of tests/fixtures/optim (made by scripts/fixtures/optim_fixtures.py with torch)
    /// reproduces torch's learning rates over 80 epochs (800 batches for onecycle).
    #[test]
    fn every_case_matches_torch_sequence() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/optim");
        let json = std::fs::read_to_string(dir.join("schedules.json")).expect("schedules.json");
        let fixture: Fixture = serde_json::from_str(&json).expect("schedules.json parses");
        let torch: HashMap<String, Tensor> =
            candle_core::safetensors::load(dir.join("schedules.safetensors"), &Device::Cpu).expect("fixture");
        let mut worst = 0.0f64;
        let mut inexact = Vec::new();
        for case in &fixture.cases {
            assert_eq!(case.config.validate(), Ok(()), "{}", case.case);
            let expected: Vec<f64> = torch[&case.case].to_vec1().expect("f64 sequence");
            let ours: Vec<f64> = if case.config.per_batch() {
                (0..case.epochs)
                    .flat_map(|e| (0..case.batches_per_epoch).map(move |b| (e, b)))
                    .map(|(e, b)| {
                        case.config
                            .lr_at(case.base_lr, e, b, case.batches_per_epoch, case.epochs)
                    })
                    .collect()
            } else {
                (0..case.epochs)
                    .map(|e| {
                        case.config
                            .lr_at(case.base_lr, e, 0, case.batches_per_epoch, case.epochs)
                    })
                    .collect()
            };
            assert_eq!(ours.len(), expected.len(), "{}", case.case);
            // OneCycleLR's momentum (SGD) or beta1 (Adam) per batch, where it cycles them.
            match torch.get(&format!("{}.momentum", case.case)) {
                Some(t) => {
                    let expected: Vec<f64> = t.to_vec1().expect("f64 sequence");
                    let ours: Vec<f64> = (0..case.epochs)
                        .flat_map(|e| (0..case.batches_per_epoch).map(move |b| (e, b)))
                        .map(|(e, b)| {
                            let m = case.config.momentum_at(e, b, case.batches_per_epoch, case.epochs);
                            m.expect("a cycling schedule gives a momentum")
                        })
                        .collect();
                    assert_eq!(ours.len(), expected.len(), "{} momentum", case.case);
                    for (i, (a, b)) in ours.iter().zip(&expected).enumerate() {
                        let err = (a - b).abs() / b.abs();
                        assert!(err <= 1e-12, "{} momentum at {i}: {a} vs torch {b}", case.case);
                    }
                    assert_eq!(case.config.initial_momentum(), Some(expected[0]), "{}", case.case);
                }
                None => assert_eq!(case.config.momentum_at(0, 0, 1, 1), None, "{}", case.case),
            }
            for (i, (a, b)) in ours.iter().zip(&expected).enumerate() {
                let err = (a - b).abs() / b.abs().max(f64::MIN_POSITIVE);
                assert!(err <= 1e-12, "{} at {i}: {a:e} vs torch {b:e}", case.case);
                // Only + - * / here, which round the same everywhere: the sequence must be torch's exactly
                // (a closed form instead of torch's recursion differs in the last bits).
                let arithmetic_only = matches!(
                    case.config.name,
                    SchedulerKind::Constant | SchedulerKind::Step | SchedulerKind::Exponential
                );
                assert!(
                    !arithmetic_only || a == b,
                    "{} at {i}: {a:e} vs torch {b:e}",
                    case.case
                );
                worst = worst.max(err);
                if a != b && !inexact.contains(&case.case) {
                    inexact.push(case.case.clone());
                }
            }
        }
        eprintln!("schedules: max relative error {worst:e}; not bit-identical: {inexact:?}");
    }

    fn parse(yaml: &str) -> SchedulerConfig {
        serde_saphyr::from_str(yaml).expect("valid scheduler yaml")
    }

    #[test]
    fn momentum_fields_are_onecycle_only_and_checked() {
        let problems =
            |yaml: &str| -> Vec<&'static str> { parse(yaml).problems().iter().map(|p| p.field).collect() };
        assert_eq!(
            problems("{name: step, step_size: 2, base_momentum: 0.8}"),
            vec!["base_momentum"]
        );
        assert_eq!(
            problems("{name: onecycle, max_momentum: 1.0}"),
            vec!["max_momentum"]
        );
        assert_eq!(
            problems("{name: onecycle, cycle_momentum: false, base_momentum: 0.8}"),
            vec!["base_momentum"]
        );
        assert!(problems("{name: onecycle, base_momentum: 0.8, max_momentum: 0.9}").is_empty());
        let off = parse("{name: onecycle, cycle_momentum: false}");
        assert_eq!(
            (off.momentum_at(0, 0, 10, 2), off.initial_momentum()),
            (None, None)
        );
        let r = parse("{name: onecycle}").resolved();
        assert_eq!(
            (r.cycle_momentum, r.base_momentum, r.max_momentum),
            (Some(true), Some(0.85), Some(0.95))
        );
    }

    fn epochs(c: &SchedulerConfig, base: f64, n: usize) -> Vec<f64> {
        (0..n).map(|e| c.lr_at(base, e, 0, 1, n)).collect()
    }

    #[test]
    fn constant_keeps_the_base_rate() {
        let c = SchedulerConfig::constant();
        assert!(epochs(&c, 0.01, 5).iter().all(|&lr| lr == 0.01));
        assert!(!c.per_batch());
    }

    #[test]
    fn step_decays_by_repeated_multiplication() {
        let c = parse("{name: step, step_size: 2, gamma: 0.1}");
        let lrs = epochs(&c, 0.001, 5);
        // PyTorch multiplies the previous rate, so epoch 4 is (0.001*0.1)*0.1 = 1e-05, not 0.001*0.1**2.
        assert_eq!(lrs, vec![0.001, 0.001, 0.001 * 0.1, 0.001 * 0.1, 1e-05]);
        assert_ne!(1e-05, 0.001 * 0.1f64.powf(2.0));
    }

    #[test]
    fn multistep_counts_repeated_milestones() {
        let c = parse("{name: multistep, milestones: [2, 2, 4], gamma: 0.5}");
        assert_eq!(epochs(&c, 1.0, 6), vec![1.0, 1.0, 0.25, 0.25, 0.125, 0.125]);
    }

    #[test]
    fn cosine_reaches_eta_min_at_t_max_and_comes_back() {
        let c = parse("{name: cosine, t_max: 10, eta_min: 0.001}");
        let lrs = epochs(&c, 0.1, 21);
        assert_eq!(lrs[0], 0.1);
        assert!((lrs[10] - 0.001).abs() < 1e-15, "{}", lrs[10]);
        assert!((lrs[20] - 0.1).abs() < 1e-12, "{}", lrs[20]);
        assert!(lrs[..=10].windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn cosine_t_max_defaults_to_the_epochs_after_warmup() {
        let c = parse("{name: cosine, warmup_epochs: 5}");
        let lrs = epochs(&c, 1.0, 25);
        assert_eq!(lrs[5], 1.0);
        assert!(lrs[24] > 0.0 && lrs[24] < 0.01);
        let closed = 0.5 * (1.0 + (std::f64::consts::PI * 19.0 / 20.0).cos());
        assert!((lrs[24] - closed).abs() < 1e-12);
    }

    #[test]
    fn warmup_rises_linearly_to_the_base_rate() {
        let c = parse("{name: step, step_size: 100, warmup_epochs: 4, warmup_start_factor: 0.2}");
        let lrs = epochs(&c, 1.0, 6);
        for (e, expect) in [0.2, 0.4, 0.6, 0.8, 1.0, 1.0].iter().enumerate() {
            assert!((lrs[e] - expect).abs() < 1e-15, "epoch {e}: {}", lrs[e]);
        }
    }

    #[test]
    fn onecycle_rises_to_max_lr_then_anneals_per_batch() {
        let c = parse("{name: onecycle, max_lr: 0.1, pct_start: 0.25}");
        assert!(c.per_batch());
        let at = |e, b| c.lr_at(0.001, e, b, 10, 4);
        assert!((at(0, 0) - 0.1 / 25.0).abs() < 1e-15);
        assert!((at(0, 9) - 0.1).abs() < 1e-15);
        assert!(at(1, 0) < 0.1);
        assert!((at(3, 9) - 0.1 / 25.0 / 1e4).abs() < 1e-15);
        // PyTorch allows exactly `total_steps` steps; positions past that hold the last rate.
        assert_eq!(at(7, 3), at(4, 0));
        assert_ne!(at(4, 0), at(3, 9));
    }

    #[test]
    fn unknown_fields_are_rejected_with_a_location() {
        let err = serde_saphyr::from_str::<SchedulerConfig>("name: step\nstep_size: 3\nstep_sise: 4\n")
            .expect_err("unknown field");
        let text = err.to_string();
        assert!(text.contains("step_sise"), "{text}");
        assert!(text.contains('3'), "line number missing: {text}");
    }

    #[test]
    fn validate_names_inapplicable_and_missing_fields() {
        let err = parse("{name: step, step_size: 3, t_max: 10}")
            .validate()
            .expect_err("t_max on step");
        assert!(err.contains("`t_max`") && err.contains("cosine"), "{err}");
        let err = parse("{name: step}").validate().expect_err("missing step_size");
        assert!(err.contains("`step_size`"), "{err}");
        let err = parse("{name: exponential}")
            .validate()
            .expect_err("missing gamma");
        assert!(err.contains("`gamma`"), "{err}");
        let err = parse("{name: onecycle, warmup_epochs: 2}")
            .validate()
            .expect_err("warmup on onecycle");
        assert!(err.contains("`warmup_epochs`"), "{err}");
        let err = parse("{name: multistep, milestones: [5, 3]}")
            .validate()
            .expect_err("unsorted");
        assert!(err.contains("increasing"), "{err}");
        let err = parse("{name: onecycle, pct_start: 0.6, three_phase: true}")
            .validate()
            .expect_err("pct");
        assert!(err.contains("`pct_start`"), "{err}");
        let err = parse("{name: cosine, warmup_start_factor: 0.5}")
            .validate()
            .expect_err("factor alone");
        assert!(err.contains("needs `warmup_epochs`"), "{err}");
        let problems = parse("{name: constant, gamma: 0.5, max_lr: 1.0}").problems();
        let fields: Vec<&str> = problems.iter().map(|p| p.field).collect();
        assert_eq!(fields, vec!["gamma", "max_lr"]);
        for ok in [
            "{name: constant}",
            "{name: step, step_size: 10, gamma: 0.5}",
            "{name: multistep, milestones: [10, 20]}",
            "{name: exponential, gamma: 0.9, warmup_epochs: 3}",
            "{name: cosine, T_max: 50, eta_min: 0.0}",
            "{name: onecycle, max_lr: 0.1, anneal_strategy: linear, three_phase: true}",
        ] {
            assert_eq!(parse(ok).validate(), Ok(()), "{ok}");
        }
    }

    #[test]
    fn resolved_fills_defaults_and_round_trips() {
        let r = parse("{name: onecycle}").resolved();
        assert_eq!(r.pct_start, Some(0.3));
        assert_eq!(r.anneal_strategy, Some(AnnealStrategy::Cos));
        assert_eq!(r.resolved(), r);
        let c = parse("{name: cosine, warmup_epochs: 2}");
        assert_eq!(c.resolved().warmup_start_factor, Some(1.0 / 3.0));
        assert_eq!(epochs(&c, 0.1, 12), epochs(&c.resolved(), 0.1, 12));
    }
}
