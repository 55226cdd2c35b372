//! The embedded synthetic dataset: ten classes of 32×32 shapes drawn from a seed, so the whole tool can run
//! with no download. Shapes vary in position, size, rotation, colour and clutter and sit on noisy
//! backgrounds, so a small CNN needs several epochs and crop/flip/rotation augmentation can help.

use super::shape::InputShape;
use super::{Dataset, ImageSet};
use crate::rng::Rng;

/// The generated images' shape: 32×32 RGB, like CIFAR-10.
pub const SHAPE: InputShape = InputShape::CIFAR;
const IMAGE_SIDE: usize = SHAPE.width;
const IMAGE_BYTES: usize = SHAPE.values();

/// Default number of training images.
pub const DEFAULT_TRAIN: usize = 5000;
/// Default number of test images.
pub const DEFAULT_TEST: usize = 1000;

/// Class names, index = label.
pub const CLASS_NAMES: [&str; 10] = [
    "disk", "square", "triangle", "cross", "ring", "h_bars", "v_bars", "x_mark", "checker", "dots",
];

/// Generate `train` training and `test` test images. The same sizes always give the same images: the
/// content does not depend on the training seed, so changing the seed never changes the dataset.
pub fn generate(train: usize, test: usize) -> Dataset {
    Dataset {
        train: generate_set("train", train),
        test: generate_set("test", test),
        class_names: CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
    }
}

fn generate_set(split: &str, n: usize) -> ImageSet {
    let mut pixels = vec![0u8; n * IMAGE_BYTES];
    let mut labels = Vec::with_capacity(n);
    for (i, img) in pixels.chunks_exact_mut(IMAGE_BYTES).enumerate() {
        let mut rng = Rng::stream(0x5EED, split, i as u64);
        let label = (i % 10) as u8;
        draw(label, &mut rng, img);
        labels.push(label);
    }
    ImageSet {
        shape: SHAPE,
        pixels,
        labels,
    }
}

/// Inside-ness in [0, 1] of point (u, v) in the shape's own frame (unit size ≈ radius 1).
fn coverage(label: u8, u: f32, v: f32) -> f32 {
    let soft = |d: f32| (0.5 - d * 6.0).clamp(0.0, 1.0); // d < 0 inside; anti-aliased edge
    let r = (u * u + v * v).sqrt();
    match label {
        0 => soft(r - 0.9),
        1 => soft(u.abs().max(v.abs()) - 0.75),
        2 => {
            // Upward triangle.
            let d = (v - 0.7).max((-v * 0.5 + u.abs() * 0.866) - 0.35 - 0.1);
            soft(d)
        }
        3 => soft((u.abs().min(v.abs()) - 0.22).max(u.abs().max(v.abs()) - 0.9)),
        4 => soft((r - 0.85).abs() - 0.17),
        5 => {
            let band = ((v * 2.5).rem_euclid(1.0) - 0.5).abs() - 0.22;
            soft(band.max(u.abs().max(v.abs()) - 0.9))
        }
        6 => {
            let band = ((u * 2.5).rem_euclid(1.0) - 0.5).abs() - 0.22;
            soft(band.max(u.abs().max(v.abs()) - 0.9))
        }
        7 => {
            let d1 = (u - v).abs() * std::f32::consts::FRAC_1_SQRT_2;
            let d2 = (u + v).abs() * std::f32::consts::FRAC_1_SQRT_2;
            soft((d1.min(d2) - 0.17).max(r - 0.95))
        }
        8 => {
            let cu = (u * 1.6 + 8.0).floor() as i32;
            let cv = (v * 1.6 + 8.0).floor() as i32;
            let cell: f32 = if (cu + cv) % 2 == 0 { -0.5 } else { 0.5 };
            soft(cell.max(u.abs().max(v.abs()) - 0.9))
        }
        _ => {
            let d1 = ((u - 0.45).powi(2) + (v - 0.3).powi(2)).sqrt() - 0.35;
            let d2 = ((u + 0.45).powi(2) + (v + 0.3).powi(2)).sqrt() - 0.35;
            soft(d1.min(d2))
        }
    }
}

fn random_colour(rng: &mut Rng) -> [f32; 3] {
    [
        rng.next_f32() * 255.0,
        rng.next_f32() * 255.0,
        rng.next_f32() * 255.0,
    ]
}

fn draw(label: u8, rng: &mut Rng, img: &mut [u8]) {
    let side = IMAGE_SIDE as f32;
    // Background: a gradient between two colours plus per-pixel noise.
    let c0 = random_colour(rng);
    let c1 = random_colour(rng);
    let angle = rng.next_f32() * std::f32::consts::TAU;
    let (ga, gb) = (angle.cos(), angle.sin());
    // Foreground colour kept away from the background's mean so the shape is visible but not trivial.
    let bg_mean = [
        (c0[0] + c1[0]) / 2.0,
        (c0[1] + c1[1]) / 2.0,
        (c0[2] + c1[2]) / 2.0,
    ];
    let mut fg = random_colour(rng);
    let dist: f32 = (0..3).map(|c| (fg[c] - bg_mean[c]).powi(2)).sum::<f32>().sqrt();
    if dist < 90.0 {
        for c in 0..3 {
            fg[c] = 255.0 - bg_mean[c];
        }
    }
    let cx = 9.0 + rng.next_f32() * 14.0;
    let cy = 9.0 + rng.next_f32() * 14.0;
    let scale = 5.5 + rng.next_f32() * 4.5;
    let rot = (rng.next_f32() - 0.5) * 0.9;
    let (rc, rs) = (rot.cos(), rot.sin());
    // A distractor: a smaller shape of a random other class at lower contrast.
    let d_label = ((label as u64 + 1 + rng.below(9)) % 10) as u8;
    let dcx = rng.next_f32() * side;
    let dcy = rng.next_f32() * side;
    let dscale = 2.5 + rng.next_f32() * 2.0;
    let d_alpha = 0.35 + rng.next_f32() * 0.25;
    let dcol = random_colour(rng);
    let noise = 14.0 + rng.next_f32() * 20.0;
    for y in 0..IMAGE_SIDE {
        for x in 0..IMAGE_SIDE {
            let (xf, yf) = (x as f32 + 0.5, y as f32 + 0.5);
            let t = (((xf / side - 0.5) * ga + (yf / side - 0.5) * gb) + 0.7).clamp(0.0, 1.4) / 1.4;
            let du = (xf - cx) / scale;
            let dv = (yf - cy) / scale;
            let (u, v) = (du * rc - dv * rs, du * rs + dv * rc);
            let a = coverage(label, u, v);
            let da = coverage(d_label, (xf - dcx) / dscale, (yf - dcy) / dscale) * d_alpha;
            for c in 0..3 {
                let bg = c0[c] * (1.0 - t) + c1[c] * t;
                let with_d = bg * (1.0 - da) + dcol[c] * da;
                let val = with_d * (1.0 - a) + fg[c] * a + (rng.normal() as f32) * noise;
                img[c * IMAGE_SIDE * IMAGE_SIDE + y * IMAGE_SIDE + x] = val.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_sizes_same_images() {
        let a = generate(50, 10);
        let b = generate(50, 10);
        assert_eq!(a, b);
        assert_eq!(a.train.len(), 50);
        assert_eq!(a.test.len(), 10);
        assert_ne!(a.train.image(0), a.test.image(0));
    }

    #[test]
    fn classes_are_balanced_and_images_vary() {
        let d = generate(100, 0);
        for c in 0..10u8 {
            assert_eq!(d.train.labels.iter().filter(|&&l| l == c).count(), 10);
        }
        let mean = |i: usize| d.train.image(i).iter().map(|&p| p as f64).sum::<f64>() / IMAGE_BYTES as f64;
        assert!((0..10).map(mean).any(|m| (m - mean(0)).abs() > 5.0));
    }
}
