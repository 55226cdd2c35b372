//! The scalars a training epoch contributes: one point per series at step = the 1-based epoch.

use super::history::EpochRecord;
use crate::tensorboard::EventWriter;

/// The scalar tags of an epoch, in the order they are written. The `train/` and `val/` prefixes put the
/// two splits side by side in TensorBoard's tag groups.
pub const EPOCH_TAGS: [&str; 6] = [
    "train/loss",
    "train/accuracy",
    "val/loss",
    "val/accuracy",
    "lr",
    "images_per_second",
];

impl EventWriter {
    /// Queues the epoch's [`EPOCH_TAGS`] at step `record.epoch`.
    pub fn add_epoch(&mut self, record: &EpochRecord) {
        let values = [
            record.train_loss,
            record.train_accuracy,
            record.val_loss,
            record.val_accuracy,
            record.lr,
            record.images_per_second,
        ];
        for (tag, value) in EPOCH_TAGS.iter().zip(values) {
            self.add_scalar(tag, record.epoch as i64, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensorboard::{read_events, scalar_series};

    #[test]
    fn each_field_lands_under_its_tag() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.add_epoch(&EpochRecord {
            epoch: 3,
            lr: 0.25,
            train_loss: 1.5,
            train_accuracy: 0.5,
            val_loss: 2.0,
            val_accuracy: 0.75,
            seconds: 9.0,
            data_wait_seconds: 1.0,
            images_per_second: 1024.0,
        });
        w.flush().unwrap();
        let series = scalar_series(&read_events(w.path()).unwrap());
        let got: Vec<(&str, (i64, f32))> = series.iter().map(|(k, v)| (k.as_str(), v[0])).collect();
        assert_eq!(
            got,
            [
                ("images_per_second", (3, 1024.0)),
                ("lr", (3, 0.25)),
                ("train/accuracy", (3, 0.5)),
                ("train/loss", (3, 1.5)),
                ("val/accuracy", (3, 0.75)),
                ("val/loss", (3, 2.0)),
            ]
        );
    }
}
