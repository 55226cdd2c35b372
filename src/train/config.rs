//! The `train:` section of a pipeline file: epochs, batches, optimizer, schedule, checkpoint selection.
//! Parsed by src/spec, consumed here in src/train.

use super::optim::OptimizerConfig;
use super::schedule::SchedulerConfig;
use serde::{Deserialize, Serialize};

/// Which checkpoint is kept as the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Select {
    /// The epoch with the highest validation accuracy (the seed's choice).
    #[default]
    BestValAccuracy,
    /// The epoch with the lowest validation loss.
    BestValLoss,
    /// The last epoch.
    Last,
}

/// `train.early_stopping`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// `val_accuracy` or `val_loss`.
    pub metric: StopMetric,
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// Smallest change that counts as improvement.
    #[serde(default)]
    pub min_delta: f64,
}

/// Metric watched by early stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopMetric {
    /// Higher is better.
    ValAccuracy,
    /// Lower is better.
    ValLoss,
}

/// `train:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// Passes over the training split.
    pub epochs: usize,
    /// Images per training batch.
    pub batch_size: usize,
    /// Images per evaluation batch (default 256; does not change results).
    #[serde(default)]
    pub eval_batch_size: Option<usize>,
    /// The optimizer.
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule (default constant).
    #[serde(default = "SchedulerConfig::constant")]
    pub scheduler: SchedulerConfig,
    /// Which checkpoint becomes the model.
    #[serde(default)]
    pub select: Select,
    /// Stop when the watched metric stops improving.
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    /// Cross-entropy label smoothing in [0, 1).
    #[serde(default)]
    pub label_smoothing: f64,
    /// Seed of every random choice: initial weights, split, order, augmentation, dropout.
    #[serde(default)]
    pub seed: u64,
    /// When a run counts as diverged besides a NaN or infinite loss (default `{factor: 10}`).
    #[serde(default, skip_serializing_if = "Divergence::is_default")]
    pub divergence: Divergence,
}

/// `train.divergence`: the rule that stops a run whose loss explodes without becoming NaN.
///
/// With `{factor: k}`, an epoch whose mean training loss is more than k × the initial loss has diverged; the
/// initial loss is the larger of the first batch's loss (before any step) and ln(number of classes), the loss
/// of a uniform guess. `none` leaves only NaN and infinite losses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Divergence {
    /// Diverged when an epoch's mean training loss exceeds `factor` × the initial loss.
    Bound {
        /// How many times the initial loss an epoch may reach (> 1).
        factor: f64,
    },
    /// Only a NaN or infinite loss counts as divergence.
    NonFiniteOnly,
}

impl Default for Divergence {
    fn default() -> Self {
        Divergence::Bound {
            factor: Divergence::DEFAULT_FACTOR,
        }
    }
}

impl Divergence {
    /// The default factor: ten times the loss of a uniform guess is far past anything training recovers from.
    pub const DEFAULT_FACTOR: f64 = 10.0;

    /// Whether this is the default rule (left out of the hashed configuration, so keys stay as they were).
    pub fn is_default(&self) -> bool {
        *self == Divergence::default()
    }

    /// How many times the initial loss an epoch's mean training loss may reach; None without a bound.
    pub fn factor(&self) -> Option<f64> {
        match self {
            Divergence::Bound { factor } => Some(*factor),
            Divergence::NonFiniteOnly => None,
        }
    }

    /// Why the setting is not usable, if it is not.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Divergence::Bound { factor } if factor.is_nan() || *factor <= 1.0 => Err(format!(
                "`train.divergence.factor` must be greater than 1, got {factor} (use `divergence: none` to keep \
                 only the NaN/infinity check)"
            )),
            _ => Ok(()),
        }
    }
}

impl Serialize for Divergence {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Divergence::NonFiniteOnly => s.serialize_str("none"),
            Divergence::Bound { factor } => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("factor", factor)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Divergence {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Divergence;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`{factor: 10}` or `none`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Divergence, E> {
                match v {
                    "none" | "off" => Ok(Divergence::NonFiniteOnly),
                    other => Err(E::custom(format!(
                        "unknown divergence rule `{other}`: expected `{{factor: 10}}` or `none`"
                    ))),
                }
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Divergence, E> {
                match v {
                    false => Ok(Divergence::NonFiniteOnly),
                    true => Ok(Divergence::default()),
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<Divergence, E> {
                Ok(Divergence::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Divergence, A::Error> {
                let mut factor = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "factor" => factor = Some(map.next_value::<f64>()?),
                        other => return Err(de::Error::unknown_field(other, &["factor"])),
                    }
                }
                Ok(Divergence::Bound {
                    factor: factor.unwrap_or(Divergence::DEFAULT_FACTOR),
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divergence_reads_a_factor_or_none_and_the_default_is_left_out_of_the_hash() {
        let read = |y: &str| serde_saphyr::from_str::<Divergence>(y);
        assert_eq!(read("{factor: 5}").unwrap(), Divergence::Bound { factor: 5.0 });
        assert_eq!(read("none").unwrap(), Divergence::NonFiniteOnly);
        assert!(
            read("{fator: 5}")
                .unwrap_err()
                .to_string()
                .contains("unknown field `fator`")
        );
        assert!(
            read("never")
                .unwrap_err()
                .to_string()
                .contains("expected `{factor: 10}` or `none`")
        );
        assert!(Divergence::Bound { factor: 1.0 }.validate().is_err());
        assert!(Divergence::Bound { factor: f64::NAN }.validate().is_err());
        assert_eq!(Divergence::default().factor(), Some(10.0));
        assert_eq!(Divergence::NonFiniteOnly.factor(), None);

        let spec: TrainSpec =
            serde_saphyr::from_str("epochs: 1\nbatch_size: 2\noptimizer: {name: sgd, lr: 0.1}\n").unwrap();
        assert!(serde_json::to_value(&spec).unwrap().get("divergence").is_none());
        let off = TrainSpec {
            divergence: Divergence::NonFiniteOnly,
            ..spec
        };
        assert_eq!(serde_json::to_value(&off).unwrap()["divergence"], "none");
    }
}
