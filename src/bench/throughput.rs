//! Images per second from per-step wall times: median, min, max, mean.

use serde::Serialize;

/// Throughput over the timed steps of one phase (training or evaluation).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Throughput {
    /// Images per step.
    pub batch: usize,
    /// Untimed steps run first (allocator, caches and kernel tables warm up).
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
    /// Median over steps of batch ÷ step time: the headline number.
    pub median_img_per_s: f64,
    /// Slowest step's images per second.
    pub min_img_per_s: f64,
    /// Fastest step's images per second.
    pub max_img_per_s: f64,
    /// Mean over steps of images per second.
    pub mean_img_per_s: f64,
    /// Median step time in seconds.
    pub median_step_s: f64,
    /// This process's CPU seconds (all threads) per timed step: steadier than wall time on a busy machine.
    pub cpu_seconds_per_step: f64,
    /// CPU used by other processes during the timed steps ÷ (wall × cores); `None` without /proc/stat.
    pub foreign_cpu_share: Option<f64>,
}

/// The median of `v`; an even count averages the middle two, as Python's `statistics.median` (which the
/// PyTorch script uses) does, so both sides summarise alike.
fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

impl Throughput {
    /// Summarise the wall seconds of each timed step of `batch` images.
    pub fn from_step_seconds(batch: usize, warmup: usize, step_seconds: &[f64]) -> Throughput {
        let rates: Vec<f64> = step_seconds.iter().map(|&t| batch as f64 / t).collect();
        let mean = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
        Throughput {
            batch,
            warmup,
            steps: step_seconds.len(),
            median_img_per_s: median(&rates),
            min_img_per_s: rates.iter().copied().fold(f64::INFINITY, f64::min),
            max_img_per_s: rates.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            mean_img_per_s: mean,
            median_step_s: median(step_seconds),
            cpu_seconds_per_step: 0.0,
            foreign_cpu_share: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_known_step_times() {
        // 64 images in 0.5, 0.25, 1.0 and 0.5 s → 128, 256, 64, 128 img/s.
        let t = Throughput::from_step_seconds(64, 3, &[0.5, 0.25, 1.0, 0.5]);
        assert_eq!(t.steps, 4);
        assert_eq!(t.median_img_per_s, 128.0);
        assert_eq!(t.min_img_per_s, 64.0);
        assert_eq!(t.max_img_per_s, 256.0);
        assert_eq!(t.mean_img_per_s, 144.0);
        assert_eq!(t.median_step_s, 0.5);
        let odd = Throughput::from_step_seconds(10, 0, &[1.0, 0.1, 0.5]);
        assert_eq!(odd.median_img_per_s, 20.0);
    }
}
