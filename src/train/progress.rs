//! Training progress: a live bar on a terminal, plain periodic lines in CI logs.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

/// Shows how an epoch is going.
pub struct EpochProgress {
    bar: Option<ProgressBar>,
    label: String,
    total: usize,
    next_line_at: usize,
    start: Instant,
}

impl EpochProgress {
    /// Start showing epoch `epoch`/`epochs` of `total` batches for run `label`; `quiet` shows nothing.
    pub fn start(label: &str, epoch: usize, epochs: usize, total: usize, quiet: bool) -> Self {
        let label = format!("{label} epoch {epoch}/{epochs}");
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.set_prefix(label.clone());
            b
        });
        let next_line_at = if quiet { usize::MAX } else { 0 };
        EpochProgress {
            bar,
            label,
            total,
            next_line_at,
            start: Instant::now(),
        }
    }

    /// Batch `done` of the epoch finished with running mean `loss`, `accuracy` and `images` seen so far.
    pub fn update(&mut self, done: usize, loss: f64, accuracy: f64, images: usize) {
        let rate = images as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
        match &self.bar {
            Some(b) => {
                b.set_position(done as u64);
                b.set_message(format!("loss {loss:.4} acc {accuracy:.3} {rate:.0} img/s"));
            }
            None if done >= self.next_line_at && self.next_line_at != usize::MAX => {
                // Plain lines at every 25% so CI logs show life without flooding.
                let eta =
                    (self.total - done) as f64 * self.start.elapsed().as_secs_f64() / done.max(1) as f64;
                eprintln!(
                    "  {} batch {done}/{} loss {loss:.4} acc {accuracy:.3} {rate:.0} img/s ETA {eta:.0}s",
                    self.label, self.total
                );
                self.next_line_at = done + self.total.div_ceil(4).max(1);
            }
            None => {}
        }
    }

    /// The epoch is over.
    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
