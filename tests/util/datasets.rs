//! Generated dataset files for the dataset tests: MNIST-style IDX files (gzip), CIFAR-100 binary archives and
//! image folders of PNGs. Each image shows its class as a bright block at a class-dependent place over
//! noise, so a network can learn it in an epoch or two.

use flate2::Compression;
use flate2::write::GzEncoder;
use labpipe::rng::Rng;
use std::io::Write;
use std::path::Path;

/// gzip of `bytes`.
pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// One `h`×`w` plane of class `label` out of `classes`: noise with a bright block whose place says the class.
pub fn plane(rng: &mut Rng, label: usize, classes: usize, h: usize, w: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..h * w).map(|_| rng.below(60) as u8).collect();
    let cells = classes.max(2);
    let band = (w / cells).max(1);
    let x0 = (label * w / cells).min(w - band);
    for y in h / 4..(3 * h / 4).max(h / 4 + 1) {
        for x in x0..x0 + band {
            p[y * w + x] = 200 + rng.below(56) as u8;
        }
    }
    p
}

/// An IDX image file (magic 0x803) of 28×28 images of `labels`.
pub fn idx_images(rng: &mut Rng, labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for word in [0x803u32, labels.len() as u32, 28, 28] {
        b.extend(word.to_be_bytes());
    }
    for &l in labels {
        b.extend(plane(rng, l as usize, 10, 28, 28));
    }
    b
}

/// An IDX label file (magic 0x801).
pub fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for word in [0x801u32, labels.len() as u32] {
        b.extend(word.to_be_bytes());
    }
    b.extend(labels);
    b
}

/// The four gzipped IDX files of a small MNIST-shaped dataset, by file name.
pub fn mnist_files(train: usize, test: usize, seed: u64) -> Vec<(&'static str, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    let train_labels: Vec<u8> = (0..train).map(|i| (i % 10) as u8).collect();
    let test_labels: Vec<u8> = (0..test).map(|i| (i % 10) as u8).collect();
    vec![
        (
            "train-images-idx3-ubyte.gz",
            gz(&idx_images(&mut rng, &train_labels)),
        ),
        ("train-labels-idx1-ubyte.gz", gz(&idx_labels(&train_labels))),
        (
            "t10k-images-idx3-ubyte.gz",
            gz(&idx_images(&mut rng, &test_labels)),
        ),
        ("t10k-labels-idx1-ubyte.gz", gz(&idx_labels(&test_labels))),
    ]
}

/// Writes [`mnist_files`] into `root`.
pub fn write_mnist(root: &Path, train: usize, test: usize) {
    std::fs::create_dir_all(root).unwrap();
    for (name, bytes) in mnist_files(train, test, 7) {
        std::fs::write(root.join(name), bytes).unwrap();
    }
}

/// CIFAR-100 records (coarse, fine, 3072 pixels) of `n` images with fine labels cycling through `0..100`.
pub fn cifar100_records(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut b = Vec::new();
    for i in 0..n {
        let fine = i % 100;
        b.extend([(fine / 5) as u8, fine as u8]);
        for _ in 0..3 {
            b.extend(plane(rng, fine, 100, 32, 32));
        }
    }
    b
}

/// The files of a small CIFAR-100 (names relative to the archive's root).
pub fn cifar100_files(train: usize, test: usize) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng::new(11);
    let fine: Vec<String> = (0..100).map(|i| format!("fine_{i}")).collect();
    let coarse: Vec<String> = (0..20).map(|i| format!("coarse_{i}")).collect();
    vec![
        (
            "cifar-100-binary/train.bin".into(),
            cifar100_records(&mut rng, train),
        ),
        (
            "cifar-100-binary/test.bin".into(),
            cifar100_records(&mut rng, test),
        ),
        (
            "cifar-100-binary/fine_label_names.txt".into(),
            (fine.join("\n") + "\n").into_bytes(),
        ),
        (
            "cifar-100-binary/coarse_label_names.txt".into(),
            (coarse.join("\n") + "\n").into_bytes(),
        ),
    ]
}

/// A `.tar.gz` of `files`.
pub fn tar_gz(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// Writes `files` under `root`.
pub fn write_files(root: &Path, files: &[(String, Vec<u8>)]) {
    for (name, data) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
}

/// Writes a PNG of class `label` (RGB when `rgb`, else greyscale) of `w`×`h` at `path`.
pub fn write_png(path: &Path, rng: &mut Rng, label: usize, classes: usize, w: u32, h: u32, rgb: bool) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let (hu, wu) = (h as usize, w as usize);
    if rgb {
        let planes: Vec<Vec<u8>> = (0..3).map(|_| plane(rng, label, classes, hu, wu)).collect();
        let raw: Vec<u8> = (0..hu * wu)
            .flat_map(|i| [planes[0][i], planes[1][i], planes[2][i]])
            .collect();
        image::RgbImage::from_raw(w, h, raw).unwrap().save(path).unwrap();
    } else {
        let raw = plane(rng, label, classes, hu, wu);
        image::GrayImage::from_raw(w, h, raw).unwrap().save(path).unwrap();
    }
}

/// An image folder `root/{train,test}/<class>/<i>.png` with `per_class` training and `per_class / 2 + 1`
/// test images per class, all `w`×`h`.
pub fn write_image_folder(root: &Path, classes: &[&str], per_class: usize, w: u32, h: u32, rgb: bool) {
    let mut rng = Rng::new(5);
    for (split, n) in [("train", per_class), ("test", per_class / 2 + 1)] {
        for (label, class) in classes.iter().enumerate() {
            for i in 0..n {
                let path = root.join(split).join(class).join(format!("{i:03}.png"));
                write_png(&path, &mut rng, label, classes.len(), w, h, rgb);
            }
        }
    }
}

/// A one-epoch pipeline over `data` (the lines under `data:`, each indented by two spaces) with a small
/// convolutional network for `classes` classes.
pub fn pipeline(name: &str, data: &str, classes: usize) -> String {
    format!(
        "name: {name}\ndata:\n{data}model:\n  layers:\n    - conv2d: {{out_channels: 4, kernel: 3}}\n    - relu\n    \
         - flatten\n    - linear: {{out_features: {classes}}}\ntrain:\n  epochs: 1\n  batch_size: 8\n  \
         optimizer: {{name: adam, lr: 0.01}}\n"
    )
}

/// The entries of `stage` in the cache, complete or partial (its lock files are not entries).
pub fn cache_entries(out: &Path, stage: &str) -> Vec<String> {
    super::cache::stage_dirs(out, stage)
}
