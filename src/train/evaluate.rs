//! Test-set evaluation of a checkpoint: loss, accuracy, per-class accuracy and the confusion matrix.

use super::trainer::evaluate_loss;
use crate::data::ImageSet;
use crate::data::normalize::NormStats;
use crate::model::net::Net;
use candle_core::D;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Test metrics of one checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestMetrics {
    /// Mean cross-entropy (NaN for a diverged model, stored as JSON null).
    #[serde(with = "nan_as_null")]
    pub loss: f64,
    /// Share of correct predictions.
    pub accuracy: f64,
    /// Class names, index = label.
    pub class_names: Vec<String>,
    /// Accuracy per true class.
    pub per_class_accuracy: Vec<f64>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
    /// Images evaluated.
    pub images: usize,
}

/// JSON has no NaN: a diverged model's loss is written as null and read back as NaN.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// Evaluate `net` on `test`.
pub fn evaluate(
    net: &Net,
    test: &Arc<ImageSet>,
    stats: NormStats,
    class_names: &[String],
    batch_size: usize,
    workers: usize,
) -> candle_core::Result<TestMetrics> {
    let k = class_names.len();
    let mut confusion = vec![vec![0u64; k]; k];
    let (loss, accuracy) = evaluate_loss(net, test, stats, batch_size, workers, |logits, batch| {
        let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
        for (p, t) in pred.iter().zip(&batch.labels) {
            if (*t as usize) < k && (*p as usize) < k {
                confusion[*t as usize][*p as usize] += 1;
            }
        }
        Ok(())
    })?;
    let per_class_accuracy = confusion
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let n: u64 = row.iter().sum();
            if n == 0 { 0.0 } else { row[i] as f64 / n as f64 }
        })
        .collect();
    Ok(TestMetrics {
        loss,
        accuracy,
        class_names: class_names.to_vec(),
        per_class_accuracy,
        confusion,
        images: test.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_loss_survives_json() {
        let m = TestMetrics {
            loss: f64::NAN,
            accuracy: 0.1,
            class_names: vec![],
            per_class_accuracy: vec![],
            confusion: vec![],
            images: 0,
        };
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains("\"loss\":null"), "{text}");
        let back: TestMetrics = serde_json::from_str(&text).unwrap();
        assert!(back.loss.is_nan());
    }
}
