//! `train.optimizer` in a pipeline file: which optimizer, its options, and the checks that name the field
//! at fault.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum OptimizerKind {
    /// torch.optim.Adam: weight decay is L2 added to the gradient.
    #[serde(rename = "adam")]
    Adam,
    /// torch.optim.AdamW: decoupled weight decay (default 0.01).
    #[serde(rename = "adamw")]
    AdamW,
    /// torch.optim.SGD with optional momentum, dampening and Nesterov momentum.
    #[serde(rename = "sgd")]
    Sgd,
}

impl OptimizerKind {
    /// The name used in pipeline files.
    pub fn as_str(self) -> &'static str {
        match self {
            OptimizerKind::Adam => "adam",
            OptimizerKind::AdamW => "adamw",
            OptimizerKind::Sgd => "sgd",
        }
    }
}

/// One problem found in a configuration: the field to point at and a message that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// The YAML key the problem is about (e.g. `nesterov`).
    pub field: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl FieldProblem {
    /// A problem with `field`.
    pub fn new(field: &'static str, message: String) -> Self {
        FieldProblem { field, message }
    }
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// `train.optimizer` in a pipeline file. Unset options take torch.optim's defaults.
///
/// A flat struct rather than a tagged enum so that serde-saphyr keeps line and column in its errors; which
/// fields apply to which `name` is checked by [`OptimizerConfig::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Which optimizer.
    pub name: OptimizerKind,
    /// Base learning rate (the schedule scales it).
    pub lr: f64,
    /// adam, adamw: coefficients of the running averages of the gradient and its square (0.9, 0.999).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub betas: Option<[f64; 2]>,
    /// adam, adamw: added to the denominator (1e-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// L2 penalty for adam and sgd, decoupled decay for adamw (0, adamw 0.01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// adam, adamw: use the maximum of past squared-gradient averages (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amsgrad: Option<bool>,
    /// sgd: momentum factor (0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    /// sgd: dampening of momentum (0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dampening: Option<f64>,
    /// sgd: Nesterov momentum (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nesterov: Option<bool>,
}

impl OptimizerConfig {
    /// A configuration of `name` with learning rate `lr` and every option at its default.
    pub fn new(name: OptimizerKind, lr: f64) -> Self {
        OptimizerConfig {
            name,
            lr,
            betas: None,
            eps: None,
            weight_decay: None,
            amsgrad: None,
            momentum: None,
            dampening: None,
            nesterov: None,
        }
    }

    fn is_adam(&self) -> bool {
        matches!(self.name, OptimizerKind::Adam | OptimizerKind::AdamW)
    }

    /// Every problem with this configuration: fields that do not apply to `name` and values out of range.
    pub fn problems(&self) -> Vec<FieldProblem> {
        use OptimizerKind::*;
        let mut out = Vec::new();
        let kind = self.name;
        let mut not_for = |field: &'static str, set: bool, allowed: &[OptimizerKind]| {
            if set && !allowed.contains(&kind) {
                let names: Vec<&str> = allowed.iter().map(|k| k.as_str()).collect();
                out.push(FieldProblem::new(
                    field,
                    format!(
                        "`{field}` does not apply to {} (it is an option of: {}); remove it",
                        kind.as_str(),
                        names.join(", ")
                    ),
                ));
            }
        };
        not_for("betas", self.betas.is_some(), &[Adam, AdamW]);
        not_for("eps", self.eps.is_some(), &[Adam, AdamW]);
        not_for("amsgrad", self.amsgrad.is_some(), &[Adam, AdamW]);
        not_for("momentum", self.momentum.is_some(), &[Sgd]);
        not_for("dampening", self.dampening.is_some(), &[Sgd]);
        not_for("nesterov", self.nesterov.is_some(), &[Sgd]);

        let mut bad = |field: &'static str, message: String| out.push(FieldProblem::new(field, message));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bad("lr", format!("`lr` must be a number > 0, got {}", self.lr));
        }
        if let Some(betas) = self.betas {
            for (i, b) in betas.iter().enumerate() {
                if !(*b >= 0.0 && *b < 1.0) {
                    bad(
                        "betas",
                        format!("`betas` must both be in [0, 1), got betas[{i}] = {b}"),
                    );
                }
            }
        }
        if let Some(e) = self.eps
            && !(e.is_finite() && e >= 0.0)
        {
            bad("eps", format!("`eps` must be a number >= 0, got {e}"));
        }
        if let Some(w) = self.weight_decay
            && !(w.is_finite() && w >= 0.0)
        {
            bad(
                "weight_decay",
                format!("`weight_decay` must be a number >= 0, got {w}"),
            );
        }
        if let Some(m) = self.momentum
            && !(m.is_finite() && m >= 0.0)
        {
            bad("momentum", format!("`momentum` must be a number >= 0, got {m}"));
        }
        if let Some(d) = self.dampening {
            if !(0.0..=1.0).contains(&d) {
                bad("dampening", format!("`dampening` must be in [0, 1], got {d}"));
            } else if kind == Sgd && self.momentum.unwrap_or(0.0) == 0.0 && d != 0.0 {
                bad(
                    "dampening",
                    "`dampening` has no effect without `momentum`; set `momentum` or remove it".into(),
                );
            }
        }
        if kind == Sgd && self.nesterov == Some(true) {
            if self.momentum.unwrap_or(0.0) <= 0.0 {
                bad("nesterov", "`nesterov` needs `momentum` > 0".into());
            }
            if self.dampening.unwrap_or(0.0) != 0.0 {
                bad("nesterov", "`nesterov` needs `dampening` 0".into());
            }
        }
        out
    }

    /// Check the configuration; the error names the offending field(s) and says what was expected.
    pub fn validate(&self) -> std::result::Result<(), String> {
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
    pub fn resolved(&self) -> OptimizerConfig {
        let mut r = OptimizerConfig::new(self.name, self.lr);
        r.weight_decay = Some(self.weight_decay());
        if self.is_adam() {
            let (b1, b2) = self.betas();
            r.betas = Some([b1, b2]);
            r.eps = Some(self.eps.unwrap_or(1e-8));
            r.amsgrad = Some(self.amsgrad.unwrap_or(false));
        } else {
            r.momentum = Some(self.momentum.unwrap_or(0.0));
            r.dampening = Some(self.dampening.unwrap_or(0.0));
            r.nesterov = Some(self.nesterov.unwrap_or(false));
        }
        r
    }

    /// This configuration with its momentum replaced, as OneCycleLR does when it is created: SGD's
    /// `momentum`, Adam's `beta1`. `None` leaves it as it is.
    pub fn with_momentum(&self, momentum: Option<f64>) -> OptimizerConfig {
        let mut c = self.clone();
        if let Some(m) = momentum {
            if self.is_adam() {
                c.betas = Some([m, self.betas().1]);
            } else {
                c.momentum = Some(m);
            }
        }
        c
    }

    pub(super) fn betas(&self) -> (f64, f64) {
        let [b1, b2] = self.betas.unwrap_or([0.9, 0.999]);
        (b1, b2)
    }

    pub(super) fn weight_decay(&self) -> f64 {
        let default = if self.name == OptimizerKind::AdamW {
            1e-2
        } else {
            0.0
        };
        self.weight_decay.unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::super::build;
    use super::super::test_support::tiny_vars;
    use super::*;

    fn parse(yaml: &str) -> OptimizerConfig {
        serde_saphyr::from_str(yaml).expect("valid optimizer yaml")
    }

    #[test]
    fn validate_names_the_field_at_fault() {
        let cases = [
            (
                "{name: adam, lr: 0.001, nesterov: true}",
                "nesterov",
                "does not apply to adam",
            ),
            (
                "{name: adamw, lr: 0.001, momentum: 0.9}",
                "momentum",
                "option of: sgd",
            ),
            (
                "{name: sgd, lr: 0.1, betas: [0.9, 0.99]}",
                "betas",
                "option of: adam, adamw",
            ),
            ("{name: adam, lr: 0.0}", "lr", "> 0"),
            ("{name: adam, lr: -1.0}", "lr", "> 0"),
            ("{name: adam, lr: 0.001, betas: [0.9, 1.0]}", "betas", "[0, 1)"),
            ("{name: adam, lr: 0.001, eps: -1.0}", "eps", ">= 0"),
            (
                "{name: sgd, lr: 0.1, nesterov: true}",
                "nesterov",
                "needs `momentum`",
            ),
            (
                "{name: sgd, lr: 0.1, momentum: 0.9, dampening: 0.1, nesterov: true}",
                "nesterov",
                "dampening",
            ),
            (
                "{name: sgd, lr: 0.1, dampening: 0.5}",
                "dampening",
                "without `momentum`",
            ),
            ("{name: sgd, lr: 0.1, weight_decay: -0.1}", "weight_decay", ">= 0"),
        ];
        for (yaml, field, words) in cases {
            let config = parse(yaml);
            let problems = config.problems();
            assert!(problems.iter().any(|p| p.field == field), "{yaml}: {problems:?}");
            let err = config.validate().expect_err(yaml);
            assert!(
                err.contains(&format!("`{field}`")) && err.contains(words),
                "{yaml}: {err}"
            );
            assert!(build(&config, tiny_vars()).is_err(), "{yaml}");
        }
        for ok in [
            "{name: adam, lr: 0.001}",
            "{name: adam, lr: 0.001, betas: [0.8, 0.99], eps: 1.0e-6, weight_decay: 0.0001, amsgrad: true}",
            "{name: adamw, lr: 0.001, weight_decay: 0.05}",
            "{name: sgd, lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.0005}",
            "{name: sgd, lr: 0.1, momentum: 0.9, dampening: 0.1}",
        ] {
            assert_eq!(parse(ok).validate(), Ok(()), "{ok}");
        }
    }

    #[test]
    fn unknown_fields_and_names_are_rejected_with_a_location() {
        let err = serde_saphyr::from_str::<OptimizerConfig>("name: adam\nlr: 0.001\nmomentun: 0.9\n")
            .expect_err("unknown field");
        let text = err.to_string();
        assert!(text.contains("momentun") && text.contains('3'), "{text}");
        let err = serde_saphyr::from_str::<OptimizerConfig>("name: adamax\nlr: 0.001\n").expect_err("name");
        assert!(err.to_string().contains("adamax"), "{err}");
    }

    #[test]
    fn resolved_writes_torch_defaults() {
        let r = parse("{name: adamw, lr: 0.001}").resolved();
        assert_eq!(r.weight_decay, Some(0.01));
        assert_eq!(r.betas, Some([0.9, 0.999]));
        assert_eq!(r.eps, Some(1e-8));
        assert_eq!(r.momentum, None);
        assert_eq!(r.resolved(), r);
        assert_eq!(r.validate(), Ok(()));
        let r = parse("{name: sgd, lr: 0.1}").resolved();
        assert_eq!(
            (r.momentum, r.dampening, r.nesterov, r.weight_decay),
            (Some(0.0), Some(0.0), Some(false), Some(0.0))
        );
        assert_eq!(r.validate(), Ok(()));
    }
}
