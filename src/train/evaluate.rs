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
    /// Mean cross-entropy.
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
