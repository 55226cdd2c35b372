//! Training augmentations with torchvision's names, defaults and pixel-exact semantics, on images of any
//! [`InputShape`] stored channel-major as `u8` (CIFAR layout; one channel is a PIL `L` image).
//!
//! As in a torchvision pipeline, the geometric augmentations run in declared order on the `u8` image (as
//! torchvision runs them on PIL images), then `ToTensor` + `Normalize`, then `random_erasing` on the float
//! tensor (torchvision only erases tensors, so it always comes after normalization whatever its position).
//! Random parameters come from labpipe's own [`Rng`]; parity with torchvision is checked on the
//! deterministic kernels with fixed parameters (`tests/fixtures/augment`).

mod config;
mod geometry;
mod tensor;

#[cfg(test)]
mod parity_tests;

pub use config::{
    Augment, Degrees, EraseValue, Fill, Interpolation, Padding, PaddingMode, RandomCrop, RandomErasing,
    RandomHorizontalFlip, RandomRotation,
};
pub use geometry::{crop_with, hflip, rotate_with};
pub use tensor::{erase_with, to_normalized};

use crate::data::shape::InputShape;
use crate::rng::Rng;

/// Applies `augs` to the image `src` of `shape` with random parameters from `rng` and writes the normalized
/// result `(x / 255 - mean) / std` into `out` (C·H·W floats, CHW).
///
/// `mean` and `std` hold one value per channel.
///
/// Parameters are drawn in declared order: `random_crop` draws the top then the left offset (none when
/// nothing is padded), `random_horizontal_flip` one uniform, `random_rotation` one uniform angle,
/// `random_erasing` one uniform and then per attempt area, log-ratio and position (and normals for
/// `value: random`).
///
/// # Panics
/// If `src` or `out` does not hold one image of `shape`, or an augmentation fails [`Augment::validate`].
pub fn augment_image(
    augs: &[Augment],
    shape: InputShape,
    src: &[u8],
    (mean, std): (&[f32], &[f32]),
    rng: &mut Rng,
    out: &mut [f32],
) {
    assert_eq!(src.len(), shape.values(), "input must be one {shape} image");
    // Scratch is only needed when a geometric augmentation is declared; evaluation batches skip it.
    let needs_scratch = augs.iter().any(|a| !matches!(a, Augment::RandomErasing(_)));
    let scratch_len = if needs_scratch { shape.values() } else { 0 };
    let (mut front, mut back) = (vec![0u8; scratch_len], vec![0u8; scratch_len]);
    let mut moved = false;
    for aug in augs {
        let input: &[u8] = if moved { &front[..] } else { src };
        if apply_geometric(aug, shape, input, rng, &mut back) {
            std::mem::swap(&mut front, &mut back);
            moved = true;
        }
    }
    to_normalized(shape, if moved { &front[..] } else { src }, mean, std, out);
    for aug in augs {
        if let Augment::RandomErasing(e) = aug {
            random_erase(e, shape, rng, out);
        }
    }
}

/// Runs one geometric augmentation from `input` into `output`; false when it left the image as it was
/// (a flip not taken, or a tensor-space augmentation) and wrote nothing.
fn apply_geometric(aug: &Augment, shape: InputShape, input: &[u8], rng: &mut Rng, output: &mut [u8]) -> bool {
    match aug {
        Augment::RandomCrop(c) => {
            assert!(
                c.size == shape.height && c.size == shape.width,
                "random_crop.size must be the image side ({shape} images); validate the spec first"
            );
            let p = c.padding;
            let (rows, cols) = (p.top + p.bottom, p.left + p.right);
            // torchvision draws nothing when the padded image already has the crop's size.
            let (top, left) = if rows == 0 && cols == 0 {
                (0, 0)
            } else {
                (
                    rng.below(rows as u64 + 1) as usize,
                    rng.below(cols as u64 + 1) as usize,
                )
            };
            crop_with(shape, input, top, left, p, c.fill, c.padding_mode, output);
            true
        }
        Augment::RandomHorizontalFlip(f) => {
            let flip = rng.next_f64() < f.p;
            if flip {
                hflip(shape, input, output);
            }
            flip
        }
        Augment::RandomRotation(r) => {
            let (lo, hi) = r.degrees.range();
            let angle = rng.uniform(lo, hi);
            rotate_with(shape, input, angle, r.interpolation, r.fill, r.center, output);
            true
        }
        Augment::RandomErasing(_) => false,
    }
}

/// torchvision `RandomErasing.forward` on the normalized image: up to 10 tries to find a rectangle with
/// area in `scale` × image area and aspect ratio in `ratio` (log-uniform) that fits strictly inside.
fn random_erase(e: &RandomErasing, shape: InputShape, rng: &mut Rng, img: &mut [f32]) {
    if rng.next_f64() >= e.p {
        return;
    }
    let (img_h, img_w, plane) = (shape.height, shape.width, shape.plane());
    let area = plane as f64;
    let (log_lo, log_hi) = (e.ratio[0].ln(), e.ratio[1].ln());
    for _ in 0..10 {
        let erase_area = area * rng.uniform(e.scale[0], e.scale[1]);
        let aspect = rng.uniform(log_lo, log_hi).exp();
        // Python's round() is half-to-even.
        let h = (erase_area * aspect).sqrt().round_ties_even() as usize;
        let w = (erase_area / aspect).sqrt().round_ties_even() as usize;
        if !(h < img_h && w < img_w) {
            continue;
        }
        let top = rng.below((img_h - h + 1) as u64) as usize;
        let left = rng.below((img_w - w + 1) as u64) as usize;
        match e.value {
            EraseValue::Constant(v) => erase_with(shape, img, [top, left], [h, w], &vec![v; shape.channels]),
            EraseValue::PerChannel(v) => erase_with(shape, img, [top, left], [h, w], &v),
            EraseValue::Random => {
                for c in 0..shape.channels {
                    for row in top..top + h {
                        let start = c * plane + row * img_w + left;
                        for v in &mut img[start..start + w] {
                            *v = rng.normal() as f32;
                        }
                    }
                }
            }
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
    const STD: [f32; 3] = [0.2470, 0.2435, 0.2616];
    const RGB: InputShape = InputShape::CIFAR;
    const IMAGE_BYTES: usize = RGB.values();
    const IMAGE_SIDE: usize = RGB.width;

    fn image(seed: u64) -> Vec<u8> {
        let mut rng = Rng::new(seed);
        (0..IMAGE_BYTES).map(|_| rng.below(256) as u8).collect()
    }

    fn all_augs() -> Vec<Augment> {
        serde_saphyr::from_str(
            "- random_crop: {size: 32, padding: 4, padding_mode: reflect}\n\
             - random_horizontal_flip: {}\n\
             - random_rotation: {degrees: 15}\n\
             - random_rotation: {degrees: [-40, 10], interpolation: bilinear, fill: [1, 2, 3]}\n\
             - random_erasing: {p: 1}\n\
             - random_erasing: {p: 1, value: random}\n",
        )
        .unwrap()
    }

    fn run(augs: &[Augment], src: &[u8], seed: u64) -> Vec<f32> {
        let mut out = vec![0f32; IMAGE_BYTES];
        augment_image(
            augs,
            RGB,
            src,
            (&MEAN, &STD),
            &mut Rng::stream(seed, "augment", 0),
            &mut out,
        );
        out
    }

    #[test]
    fn same_seed_same_output_and_other_seeds_differ() {
        let (augs, src) = (all_augs(), image(1));
        let a = run(&augs, &src, 7);
        assert_eq!(a, run(&augs, &src, 7));
        let differing = (8..16).filter(|&s| run(&augs, &src, s) != a).count();
        assert_eq!(differing, 8);
    }

    #[test]
    fn without_augmentations_it_is_plain_normalization() {
        let src = image(2);
        let mut expected = vec![0f32; IMAGE_BYTES];
        to_normalized(RGB, &src, &MEAN, &STD, &mut expected);
        assert_eq!(run(&[], &src, 1), expected);
        let never: Vec<Augment> = serde_saphyr::from_str(
            "- random_horizontal_flip: {p: 0}\n- random_erasing: {p: 0}\n- random_crop: {size: 32}\n",
        )
        .unwrap();
        assert_eq!(run(&never, &src, 1), expected);
    }

    #[test]
    fn a_certain_flip_equals_the_flip_kernel() {
        let src = image(3);
        let mut flipped = vec![0u8; IMAGE_BYTES];
        hflip(RGB, &src, &mut flipped);
        let mut expected = vec![0f32; IMAGE_BYTES];
        to_normalized(RGB, &flipped, &MEAN, &STD, &mut expected);
        let always = [Augment::RandomHorizontalFlip(RandomHorizontalFlip { p: 1.0 })];
        assert_eq!(run(&always, &src, 4), expected);
    }

    #[test]
    fn random_crop_covers_every_offset_of_the_padding() {
        // With padding 1 there are 3×3 windows; each must come up, none other.
        let src = image(5);
        let crop: Vec<Augment> = serde_saphyr::from_str("- random_crop: {size: 32, padding: 1}").unwrap();
        let mut windows = Vec::new();
        for top in 0..3 {
            for left in 0..3 {
                let mut u8_out = vec![0u8; IMAGE_BYTES];
                crop_with(
                    RGB,
                    &src,
                    top,
                    left,
                    Padding::uniform(1),
                    Fill::default(),
                    PaddingMode::Constant,
                    &mut u8_out,
                );
                let mut f = vec![0f32; IMAGE_BYTES];
                to_normalized(RGB, &u8_out, &MEAN, &STD, &mut f);
                windows.push(f);
            }
        }
        let mut seen = [0usize; 9];
        for seed in 0..200 {
            let out = run(&crop, &src, seed);
            let i = windows
                .iter()
                .position(|w| *w == out)
                .expect("output is one of the 9 windows");
            seen[i] += 1;
        }
        assert!(seen.iter().all(|&n| n > 5), "{seen:?}");
    }

    #[test]
    fn random_erasing_blanks_a_rectangle_within_its_scale() {
        let src = image(6);
        let erase: Vec<Augment> =
            serde_saphyr::from_str("- random_erasing: {p: 1, scale: [0.1, 0.2], value: [9, 9, 9]}").unwrap();
        for seed in 0..50 {
            let out = run(&erase, &src, seed);
            let erased = out[..IMAGE_SIDE * IMAGE_SIDE]
                .iter()
                .filter(|&&v| v == 9.0)
                .count();
            // Rounding h and w moves the area a little beyond [102.4, 204.8].
            assert!(
                (80..=240).contains(&erased),
                "seed {seed}: {erased} pixels erased"
            );
            assert_eq!(out.iter().filter(|&&v| v == 9.0).count(), 3 * erased);
        }
    }
}
