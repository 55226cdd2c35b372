//! What training records per epoch, saved as JSON and CSV and read back by the report.

use serde::{Deserialize, Serialize};

/// The measurements of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Learning rate used during the epoch (the first batch's, for per-batch schedules).
    pub lr: f64,
    /// Mean training loss over the epoch's batches (weighted by batch size).
    pub train_loss: f64,
    /// Training accuracy over the epoch, in [0, 1].
    pub train_accuracy: f64,
    /// Validation loss (evaluation mode).
    pub val_loss: f64,
    /// Validation accuracy (evaluation mode), in [0, 1].
    pub val_accuracy: f64,
    /// Wall seconds of the epoch, validation included.
    pub seconds: f64,
    /// Seconds the trainer waited for batches.
    pub data_wait_seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
}

/// The per-epoch history of a training run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainHistory {
    /// One record per finished epoch, in order.
    pub epochs: Vec<EpochRecord>,
}

/// CSV column names, in order.
pub const CSV_HEADER: &str =
    "epoch,lr,train_loss,train_accuracy,val_loss,val_accuracy,seconds,data_wait_seconds,images_per_second";

impl TrainHistory {
    /// The history as CSV with a header line.
    pub fn to_csv(&self) -> String {
        let mut s = String::from(CSV_HEADER);
        s.push('\n');
        for e in &self.epochs {
            s.push_str(&format!(
                "{},{},{},{},{},{},{:.3},{:.3},{:.1}\n",
                e.epoch,
                e.lr,
                e.train_loss,
                e.train_accuracy,
                e.val_loss,
                e.val_accuracy,
                e.seconds,
                e.data_wait_seconds,
                e.images_per_second
            ));
        }
        s
    }

    /// The epoch with the highest validation accuracy (the earliest on ties).
    pub fn best_val_accuracy(&self) -> Option<&EpochRecord> {
        self.epochs
            .iter()
            .fold(None, |best: Option<&EpochRecord>, e| match best {
                Some(b) if b.val_accuracy >= e.val_accuracy => Some(b),
                _ => Some(e),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(epoch: usize, val_accuracy: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            lr: 0.001,
            train_loss: 1.0,
            train_accuracy: 0.5,
            val_loss: 1.0,
            val_accuracy,
            seconds: 1.0,
            data_wait_seconds: 0.0,
            images_per_second: 100.0,
        }
    }

    #[test]
    fn best_is_earliest_maximum() {
        let h = TrainHistory {
            epochs: vec![rec(1, 0.3), rec(2, 0.6), rec(3, 0.6), rec(4, 0.5)],
        };
        assert_eq!(h.best_val_accuracy().unwrap().epoch, 2);
    }

    #[test]
    fn csv_has_header_and_rows() {
        let h = TrainHistory {
            epochs: vec![rec(1, 0.25)],
        };
        let csv = h.to_csv();
        assert!(csv.starts_with(CSV_HEADER));
        assert_eq!(csv.lines().count(), 2);
        assert!(csv.lines().nth(1).unwrap().starts_with("1,0.001,1,0.5,1,0.25,"));
    }
}
