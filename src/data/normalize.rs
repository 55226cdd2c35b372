//! Input normalization: which per-channel mean and std are used, and the u8 → f32 conversion.

use super::{IMAGE_BYTES, ImageSet};
use crate::data::config::Normalize;
use serde::{Deserialize, Serialize};

/// Per-channel statistics on the [0, 1] pixel scale, as torchvision's `Normalize(mean, std)` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NormStats {
    /// Per-channel mean.
    pub mean: [f32; 3],
    /// Per-channel standard deviation.
    pub std: [f32; 3],
}

impl NormStats {
    /// No normalization: only the ToTensor scaling to [0, 1].
    pub const IDENTITY: NormStats = NormStats {
        mean: [0.0; 3],
        std: [1.0; 3],
    };
}

/// Per-channel mean and unbiased std (torch's `Tensor.std` default) over the given images.
pub fn channel_stats<'a>(images: impl Iterator<Item = &'a [u8]>) -> NormStats {
    let plane = IMAGE_BYTES / 3;
    let mut sum = [0f64; 3];
    let mut sq = [0f64; 3];
    let mut n = 0usize;
    for img in images {
        for c in 0..3 {
            for &p in &img[c * plane..(c + 1) * plane] {
                let v = p as f64 / 255.0;
                sum[c] += v;
                sq[c] += v * v;
            }
        }
        n += plane;
    }
    let mut stats = NormStats::IDENTITY;
    for c in 0..3 {
        let mean = sum[c] / n as f64;
        let var = ((sq[c] - n as f64 * mean * mean) / (n as f64 - 1.0).max(1.0)).max(0.0);
        stats.mean[c] = mean as f32;
        // A constant image would divide by zero; torchvision would produce inf. Guard and keep it visible.
        stats.std[c] = if var > 0.0 { var.sqrt() as f32 } else { 1.0 };
    }
    stats
}

/// The statistics `mode` calls for, from the full training set and the training split's indices.
pub fn stats_for(mode: &Normalize, train: &ImageSet, train_indices: &[usize]) -> NormStats {
    match mode {
        Normalize::None => NormStats::IDENTITY,
        Normalize::FirstImage => channel_stats(std::iter::once(train.image(0))),
        Normalize::TrainMeanStd => channel_stats(train_indices.iter().map(|&i| train.image(i))),
        Normalize::Fixed { mean, std } => NormStats {
            mean: mean.map(|v| v as f32),
            std: std.map(|v| v as f32),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_image_stats_of_a_known_image() {
        // Red plane all 255, green alternating 0/255, blue all 0.
        let mut img = vec![0u8; IMAGE_BYTES];
        let plane = IMAGE_BYTES / 3;
        img[..plane].fill(255);
        for (i, p) in img[plane..2 * plane].iter_mut().enumerate() {
            *p = if i % 2 == 0 { 255 } else { 0 };
        }
        let set = ImageSet {
            pixels: img,
            labels: vec![0],
        };
        let s = stats_for(&Normalize::FirstImage, &set, &[0]);
        assert_eq!(s.mean, [1.0, 0.5, 0.0]);
        // Unbiased std of 512 ones and 512 zeros: sqrt(0.25 * 1024 / 1023).
        assert!((s.std[1] - (0.25f64 * 1024.0 / 1023.0).sqrt() as f32).abs() < 1e-6);
        assert_eq!(s.std[0], 1.0, "constant channel guarded");
    }
}
