//! Learning-rate schedules with PyTorch's semantics, as pure functions of the epoch (so resume is exact).

use serde::{Deserialize, Serialize};

/// Which schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerKind {
    /// The base learning rate throughout.
    Constant,
    /// torch.optim.lr_scheduler.StepLR.
    Step,
}

/// `train.scheduler` in a pipeline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Which schedule.
    pub name: SchedulerKind,
    /// StepLR: epochs between decays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_size: Option<usize>,
    /// StepLR: decay factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f64>,
}

impl SchedulerConfig {
    /// The constant schedule.
    pub fn constant() -> Self {
        SchedulerConfig {
            name: SchedulerKind::Constant,
            step_size: None,
            gamma: None,
        }
    }

    /// Check values; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.step_size == Some(0) {
            return Err("`step_size` must be at least 1".into());
        }
        Ok(())
    }

    /// Learning rate for 0-based `epoch`.
    pub fn lr_at(&self, base_lr: f64, epoch: usize) -> f64 {
        match self.name {
            SchedulerKind::Constant => base_lr,
            SchedulerKind::Step => {
                let step = self.step_size.unwrap_or(1).max(1);
                base_lr * self.gamma.unwrap_or(0.1).powi((epoch / step) as i32)
            }
        }
    }
}
