//! Input normalization: which per-channel mean and std are used, and the u8 → f32 conversion.

use super::ImageSet;
use super::shape::InputShape;
use crate::data::config::Normalize;
use serde::{Deserialize, Serialize};

/// Per-channel statistics on the [0, 1] pixel scale, as torchvision's `Normalize(mean, std)` takes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormStats {
    /// Per-channel mean, one value per image channel.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation, one value per image channel.
    pub std: Vec<f32>,
}

impl NormStats {
    /// No normalization for `channels` channels: only the ToTensor scaling to [0, 1].
    pub fn identity(channels: usize) -> NormStats {
        NormStats {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }
}

/// Per-channel mean and unbiased std (torch's `Tensor.std` default) over the given images of `shape`.
pub fn channel_stats<'a>(shape: InputShape, images: impl Iterator<Item = &'a [u8]>) -> NormStats {
    let (channels, plane) = (shape.channels, shape.plane());
    let mut sum = vec![0f64; channels];
    let mut sq = vec![0f64; channels];
    let mut n = 0usize;
    for img in images {
        for c in 0..channels {
            for &p in &img[c * plane..(c + 1) * plane] {
                let v = p as f64 / 255.0;
                sum[c] += v;
                sq[c] += v * v;
            }
        }
        n += plane;
    }
    let mut stats = NormStats::identity(channels);
    for c in 0..channels {
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
        Normalize::None => NormStats::identity(train.shape.channels),
        Normalize::FirstImage => channel_stats(train.shape, std::iter::once(train.image(0))),
        Normalize::TrainMeanStd => channel_stats(train.shape, train_indices.iter().map(|&i| train.image(i))),
        Normalize::Fixed { mean, std } => NormStats {
            mean: mean.iter().map(|&v| v as f32).collect(),
            std: std.iter().map(|&v| v as f32).collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_image_stats_of_a_known_image() {
        // Red plane all 255, green alternating 0/255, blue all 0.
        let shape = InputShape::CIFAR;
        let mut img = vec![0u8; shape.values()];
        let plane = shape.plane();
        img[..plane].fill(255);
        for (i, p) in img[plane..2 * plane].iter_mut().enumerate() {
            *p = if i % 2 == 0 { 255 } else { 0 };
        }
        let set = ImageSet {
            shape,
            pixels: img,
            labels: vec![0],
        };
        let s = stats_for(&Normalize::FirstImage, &set, &[0]);
        assert_eq!(s.mean, [1.0, 0.5, 0.0]);
        // Unbiased std of 512 ones and 512 zeros: sqrt(0.25 * 1024 / 1023).
        assert!((s.std[1] - (0.25f64 * 1024.0 / 1023.0).sqrt() as f32).abs() < 1e-6);
        assert_eq!(s.std[0], 1.0, "constant channel guarded");
    }

    #[test]
    fn greyscale_statistics_have_one_channel() {
        // A 1×2×3 image: 0, 51, 102, 153, 204, 255 → mean 0.5, unbiased std of 0, 0.2, ..., 1.
        let shape = InputShape::new(1, 2, 3);
        let set = ImageSet {
            shape,
            pixels: vec![0, 51, 102, 153, 204, 255],
            labels: vec![3],
        };
        let s = stats_for(&Normalize::TrainMeanStd, &set, &[0]);
        assert_eq!(s.mean.len(), 1);
        assert!((s.mean[0] - 0.5).abs() < 1e-6, "{s:?}");
        assert!((s.std[0] - 0.374_165_75).abs() < 1e-6, "{s:?}");
        assert_eq!(stats_for(&Normalize::None, &set, &[0]), NormStats::identity(1));
    }
}
