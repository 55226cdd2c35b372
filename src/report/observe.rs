//! Facts a student needs to discuss a training curve, computed from the history: when validation peaked,
//! whether and when overfitting set in, how much validation loss oscillates, the final gap, and where early
//! stopping would have stopped; with the test result, whether the model did better than guessing.

use crate::train::history::TrainHistory;
use serde::{Deserialize, Serialize};

/// Patience used for "early stopping would have stopped at".
pub const PATIENCE: usize = 10;
/// Test accuracy at most this many percentage points above chance (1/classes) is called out.
pub const NEAR_CHANCE_POINTS: f64 = 5.0;

/// Observations on one run's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observations {
    /// Epochs in the history.
    pub epochs: usize,
    /// Epoch of the highest validation accuracy (earliest on ties).
    pub best_val_epoch: usize,
    /// That accuracy.
    pub best_val_accuracy: f64,
    /// Epoch of the lowest validation loss.
    pub min_val_loss_epoch: usize,
    /// That loss.
    pub min_val_loss: f64,
    /// The epoch after which validation loss stopped improving while training loss kept falling, if it did.
    pub overfitting_onset: Option<usize>,
    /// Training loss change (relative) from the onset to the end.
    pub train_loss_change_after_onset: Option<f64>,
    /// Validation loss change (relative) from its minimum to the end.
    pub val_loss_change_after_onset: Option<f64>,
    /// Standard deviation of epoch-to-epoch changes of validation loss.
    pub val_loss_oscillation: f64,
    /// Final training accuracy minus final validation accuracy.
    pub final_gap: f64,
    /// The last epoch that set a new best validation accuracy.
    pub last_improvement_epoch: usize,
    /// Where early stopping with patience `PATIENCE` on validation accuracy would have stopped (None: it would not).
    pub early_stop_epoch: Option<usize>,
    /// Chance accuracy (1/classes), once the test result is known.
    pub chance_accuracy: Option<f64>,
    /// True when the test accuracy is within `NEAR_CHANCE_POINTS` of chance (or below it).
    pub near_chance: bool,
    /// The facts as sentences, for templates that just list them.
    pub sentences: Vec<String>,
}

impl Observations {
    /// Add what the test result says: a sentence when `accuracy` is hardly better than guessing among
    /// `classes` classes.
    pub fn note_test(&mut self, accuracy: f64, classes: usize) {
        if classes == 0 || !accuracy.is_finite() {
            return;
        }
        let chance = 1.0 / classes as f64;
        self.chance_accuracy = Some(chance);
        // The tolerance keeps "exactly 5 points" near despite rounding (0.55 - 0.5 is not exactly 0.05).
        self.near_chance = (accuracy - chance) * 100.0 <= NEAR_CHANCE_POINTS + 1e-9;
        if self.near_chance {
            self.sentences.push(format!(
                "Test accuracy {:.1}% is within {NEAR_CHANCE_POINTS:.0} points of chance ({:.1}% for {classes} \
                 classes): the model has learned little beyond guessing; check the learning rate, the number of \
                 epochs and that the labels match the images.",
                accuracy * 100.0,
                chance * 100.0
            ));
        }
    }
}

/// Observations for `h`, or None for an empty history.
pub fn observe(h: &TrainHistory) -> Option<Observations> {
    let e = &h.epochs;
    let last = e.last()?;
    let best = h.best_val_accuracy()?;
    let min_loss = e.iter().filter(|r| r.val_loss.is_finite()).fold(
        None,
        |m: Option<&crate::train::history::EpochRecord>, r| match m {
            Some(b) if b.val_loss <= r.val_loss => Some(b),
            _ => Some(r),
        },
    )?;
    // Overfitting: validation loss ends clearly (≥ 5%) above its minimum, reached before the end, while the
    // training loss went on falling clearly (≥ 5%) after that minimum.
    let mut onset = None;
    let mut train_change = None;
    let mut val_change = None;
    if min_loss.epoch < last.epoch {
        let t = (last.train_loss - min_loss.train_loss) / min_loss.train_loss.abs().max(1e-12);
        let v = (last.val_loss - min_loss.val_loss) / min_loss.val_loss.abs().max(1e-12);
        if t <= -0.05 && v >= 0.05 {
            onset = Some(min_loss.epoch);
            train_change = Some(t);
            val_change = Some(v);
        }
    }
    let diffs: Vec<f64> = e
        .windows(2)
        .map(|w| w[1].val_loss - w[0].val_loss)
        .filter(|d| d.is_finite())
        .collect();
    let oscillation = if diffs.len() < 2 {
        0.0
    } else {
        let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
        (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (diffs.len() - 1) as f64).sqrt()
    };
    let mut best_so_far = f64::NEG_INFINITY;
    let mut last_improvement = e[0].epoch;
    for r in e {
        if r.val_accuracy > best_so_far {
            best_so_far = r.val_accuracy;
            last_improvement = r.epoch;
        }
    }
    let early_stop = (last.epoch >= last_improvement + PATIENCE).then_some(last_improvement + PATIENCE);
    let gap = last.train_accuracy - last.val_accuracy;

    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    let mut s = vec![format!(
        "Validation accuracy peaked at {} in epoch {} of {}.",
        pct(best.val_accuracy),
        best.epoch,
        last.epoch
    )];
    match onset {
        Some(o) => s.push(format!(
            "Validation loss stopped improving after epoch {o} (minimum {:.3}) while training loss kept falling: \
             from there to epoch {} training loss changed by {:+.0}% and validation loss by {:+.0}% — overfitting.",
            min_loss.val_loss,
            last.epoch,
            train_change.unwrap_or(0.0) * 100.0,
            val_change.unwrap_or(0.0) * 100.0
        )),
        None => s.push(format!(
            "No overfitting onset: validation loss reached its minimum {:.3} in epoch {} and did not rise by 5% or more \
             while training loss fell.",
            min_loss.val_loss, min_loss.epoch
        )),
    }
    s.push(format!(
        "Epoch-to-epoch changes of validation loss have a standard deviation of {oscillation:.3}."
    ));
    s.push(format!(
        "At the last epoch training accuracy is {} and validation accuracy {} (gap {:+.1} points).",
        pct(last.train_accuracy),
        pct(last.val_accuracy),
        gap * 100.0
    ));
    match early_stop {
        Some(at) => s.push(format!(
            "Nothing improved after epoch {last_improvement}: early stopping with patience {PATIENCE} would have stopped at epoch {at}."
        )),
        None => s.push(format!(
            "Validation accuracy last improved in epoch {last_improvement}; early stopping with patience {PATIENCE} would not have stopped."
        )),
    }
    Some(Observations {
        epochs: last.epoch,
        best_val_epoch: best.epoch,
        best_val_accuracy: best.val_accuracy,
        min_val_loss_epoch: min_loss.epoch,
        min_val_loss: min_loss.val_loss,
        overfitting_onset: onset,
        train_loss_change_after_onset: train_change,
        val_loss_change_after_onset: val_change,
        val_loss_oscillation: oscillation,
        final_gap: gap,
        last_improvement_epoch: last_improvement,
        early_stop_epoch: early_stop,
        chance_accuracy: None,
        near_chance: false,
        sentences: s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::history::EpochRecord;

    fn hist(points: &[(f64, f64, f64, f64)]) -> TrainHistory {
        TrainHistory {
            epochs: points
                .iter()
                .enumerate()
                .map(|(i, &(tl, ta, vl, va))| EpochRecord {
                    epoch: i + 1,
                    lr: 0.001,
                    train_loss: tl,
                    train_accuracy: ta,
                    val_loss: vl,
                    val_accuracy: va,
                    seconds: 1.0,
                    data_wait_seconds: 0.0,
                    images_per_second: 1.0,
                })
                .collect(),
        }
    }

    #[test]
    fn overfitting_curve() {
        // Val loss bottoms out at epoch 3 then rises while train loss keeps falling.
        let mut pts = vec![(2.0, 0.3, 2.0, 0.3), (1.5, 0.5, 1.4, 0.5), (1.0, 0.65, 1.0, 0.62)];
        for k in 0..12 {
            let t = 0.9 - 0.06 * k as f64;
            pts.push((
                t,
                0.7 + 0.02 * k as f64,
                1.05 + 0.05 * k as f64,
                0.61 - 0.001 * k as f64,
            ));
        }
        let o = observe(&hist(&pts)).unwrap();
        assert_eq!(o.overfitting_onset, Some(3));
        assert_eq!(o.best_val_epoch, 3);
        assert_eq!(o.last_improvement_epoch, 3);
        assert_eq!(o.early_stop_epoch, Some(13));
        assert!(o.final_gap > 0.3);
        assert!(o.sentences[1].contains("after epoch 3"), "{}", o.sentences[1]);
    }

    #[test]
    fn oscillating_curve_has_larger_oscillation_than_smooth() {
        let smooth = hist(
            &(0..10)
                .map(|k| {
                    (
                        1.0 - 0.05 * k as f64,
                        0.5,
                        1.0 - 0.04 * k as f64,
                        0.5 + 0.01 * k as f64,
                    )
                })
                .collect::<Vec<_>>(),
        );
        let wobbly = hist(
            &(0..10)
                .map(|k| {
                    (
                        1.0 - 0.05 * k as f64,
                        0.5,
                        1.0 - 0.04 * k as f64 + if k % 2 == 0 { 0.3 } else { -0.3 },
                        0.5,
                    )
                })
                .collect::<Vec<_>>(),
        );
        let (s, w) = (observe(&smooth).unwrap(), observe(&wobbly).unwrap());
        assert!(s.val_loss_oscillation < 1e-9, "{}", s.val_loss_oscillation);
        assert!(w.val_loss_oscillation > 0.5, "{}", w.val_loss_oscillation);
        assert_eq!(s.overfitting_onset, None);
    }

    #[test]
    fn flat_curve() {
        let o = observe(&hist(&[(1.0, 0.5, 1.0, 0.5); 4])).unwrap();
        assert_eq!(o.best_val_epoch, 1);
        assert_eq!(o.overfitting_onset, None);
        assert_eq!(o.val_loss_oscillation, 0.0);
        assert_eq!(o.early_stop_epoch, None);
        assert_eq!(o.final_gap, 0.0);
    }

    #[test]
    fn accuracy_near_chance_is_called_out() {
        let base = observe(&hist(&[(1.0, 0.5, 1.0, 0.5); 4])).unwrap();
        let n = base.sentences.len();
        // Ten classes: 12% is 2 points above chance, 40% is far from it.
        let mut o = base.clone();
        o.note_test(0.12, 10);
        assert!(o.near_chance && o.chance_accuracy == Some(0.1));
        assert_eq!(o.sentences.len(), n + 1);
        assert!(
            o.sentences[n]
                .starts_with("Test accuracy 12.0% is within 5 points of chance (10.0% for 10 classes)"),
            "{}",
            o.sentences[n]
        );
        let mut o = base.clone();
        o.note_test(0.40, 10);
        assert!(!o.near_chance && o.sentences.len() == n);
        // A hundred classes: 4% is near chance (1%), 30% is not; below chance counts too.
        let mut o = base.clone();
        o.note_test(0.04, 100);
        assert!(o.near_chance);
        let mut o = base.clone();
        o.note_test(0.30, 100);
        assert!(!o.near_chance);
        let mut o = base.clone();
        o.note_test(0.02, 10);
        assert!(o.near_chance);
        // Exactly 5 points above is still near; no classes or NaN say nothing.
        let mut o = base.clone();
        o.note_test(0.55, 2);
        assert!(o.near_chance);
        let mut o = base.clone();
        o.note_test(f64::NAN, 10);
        o.note_test(0.1, 0);
        assert!(!o.near_chance && o.chance_accuracy.is_none() && o.sentences.len() == n);
    }

    #[test]
    fn empty_history_has_no_observations() {
        assert!(observe(&TrainHistory::default()).is_none());
    }
}
