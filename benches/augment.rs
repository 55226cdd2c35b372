//! Images per second on one core for the CIFAR training augmentation of the lab (torchvision's
//! RandomCrop(32, padding=4), RandomHorizontalFlip(), RandomRotation(15), ToTensor, Normalize), to compare
//! with torchvision's 11-13 k images/s on one core. Run: `cargo bench --bench augment`.

use std::hint::black_box;
use std::time::Instant;

use labpipe::data::augment::{Augment, augment_image, to_normalized};
use labpipe::data::shape::InputShape;
use labpipe::rng::Rng;

const SHAPE: InputShape = InputShape::CIFAR;
const IMAGE_BYTES: usize = SHAPE.values();
const IMAGES: usize = 2000;
const PASSES: usize = 5;
const MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
const STD: [f32; 3] = [0.2470, 0.2435, 0.2616];

/// Median images/s over `PASSES` passes of `IMAGES` images through `f`.
fn rate(mut f: impl FnMut(usize, &mut [f32])) -> f64 {
    let mut out = vec![0f32; IMAGE_BYTES];
    for i in 0..200 {
        f(i, &mut out);
    }
    let mut rates: Vec<f64> = (0..PASSES)
        .map(|_| {
            let start = Instant::now();
            for i in 0..IMAGES {
                f(i, &mut out);
                black_box(&out);
            }
            IMAGES as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[PASSES / 2]
}

fn main() {
    let mut rng = Rng::new(0);
    let pixels: Vec<u8> = (0..IMAGES * IMAGE_BYTES).map(|_| rng.below(256) as u8).collect();
    let image = |i: usize| &pixels[(i % IMAGES) * IMAGE_BYTES..(i % IMAGES + 1) * IMAGE_BYTES];
    let lab: Vec<Augment> = serde_saphyr::from_str(
        "- random_crop: {size: 32, padding: 4}\n\
         - random_horizontal_flip: {p: 0.5}\n\
         - random_rotation: {degrees: 15}\n",
    )
    .expect("benchmark pipeline parses");
    let bilinear: Vec<Augment> = serde_saphyr::from_str(
        "- random_crop: {size: 32, padding: 4}\n\
         - random_horizontal_flip: {p: 0.5}\n\
         - random_rotation: {degrees: 15, interpolation: bilinear}\n\
         - random_erasing: {p: 0.5}\n",
    )
    .expect("benchmark pipeline parses");

    let mut aug_rng = Rng::stream(0, "augment-bench", 0);
    let lab_rate = rate(|i, out| augment_image(&lab, SHAPE, image(i), (&MEAN, &STD), &mut aug_rng, out));
    let bilinear_rate =
        rate(|i, out| augment_image(&bilinear, SHAPE, image(i), (&MEAN, &STD), &mut aug_rng, out));
    let normalize_rate = rate(|i, out| to_normalized(SHAPE, image(i), &MEAN, &STD, out));

    println!("labpipe augmentation, one core, {IMAGES} images x {PASSES} passes (median):");
    println!(
        "  crop(32, pad 4) + hflip + rotation(15, nearest) + normalize: {lab_rate:>10.0} images/s ({:.2} us/image)",
        1e6 / lab_rate
    );
    println!(
        "  same with bilinear rotation + random_erasing:               {bilinear_rate:>10.0} images/s ({:.2} us/image)",
        1e6 / bilinear_rate
    );
    println!(
        "  normalize only (eval):                                      {normalize_rate:>10.0} images/s ({:.2} us/image)",
        1e6 / normalize_rate
    );
}
