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
    use crate::data::normalize::stats_for;
    use crate::data::synthetic;
    use crate::train::trainer::evaluate_loss;
    use candle_core::Device;
    use std::path::Path;

    /// Networks whose kernels see the whole batch at once: convolutions, BatchNorm (running statistics in
    /// evaluation), pooling, and linear layers with an inner dimension below and above the GEMM's 512-wide
    /// blocks.
    const MODELS: [&str; 2] = [
        "    - conv2d: {out_channels: 8, kernel: 3, padding: 1}
    - batch_norm2d
    - relu
    - max_pool2d: {kernel: 4}
    - flatten
    - linear: {out_features: 10}
",
        "    - flatten
    - linear: {out_features: 128}
    - relu
    - linear: {out_features: 10}
",
    ];

    #[test]
    fn validation_and_test_loss_do_not_depend_on_the_eval_batch_size() {
        let data = synthetic::generate(300, 300);
        let (val, test) = (Arc::new(data.train.clone()), Arc::new(data.test.clone()));
        for layers in MODELS {
            let text = format!(
                "name: t
data: {{dataset: synthetic, train_size: 300, test_size: 300, val_split: 40, normalize: first_image}}
model:
  layers:
{layers}train: {{epochs: 1, batch_size: 32, optimizer: {{name: sgd, lr: 0.01}}}}
"
            );
            let p = crate::spec::load_str(Path::new("t.yaml"), &text, &[]).unwrap();
            let run = &p.runs[0];
            let all: Vec<usize> = (0..300).collect();
            let stats = stats_for(&run.data.normalize, &data.train, &all);
            let net = Net::new(&run.decl, &Device::Cpu, 7).unwrap();
            let measure = |batch: usize| {
                let (val_loss, val_acc) =
                    evaluate_loss(&net, &val, stats.clone(), batch, 2, |_, _| Ok(())).unwrap();
                let m = evaluate(&net, &test, stats.clone(), &data.class_names, batch, 2).unwrap();
                (
                    val_loss.to_bits(),
                    val_acc.to_bits(),
                    m.loss.to_bits(),
                    m.confusion,
                )
            };
            let reference = measure(256);
            assert!(f64::from_bits(reference.0) > 0.0 && f64::from_bits(reference.2) > 0.0);
            for batch in [7, 64, 300, 1, 65] {
                assert_eq!(measure(batch), reference, "eval batch size {batch}:\n{layers}");
            }
        }
    }

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
