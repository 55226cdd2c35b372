//! A folder of one's own images in torchvision's ImageFolder layout: `root/train/<class>/<image>` and
//! `root/test/<class>/<image>`, or `root/<class>/<image>` with `data.test_split`. Classes are the
//! sub-folders in sorted order (label = index); images are found recursively in sorted order, as
//! torchvision's `make_dataset` does.
//!
//! Where labpipe differs from torchvision, it is to avoid a silent mistake: hidden folders (`.ipynb_checkpoints`)
//! are not classes and hidden files (`._photo.jpg`) are not images; both are skipped and counted, like files
//! at the class level and files of other types. An empty class folder is an error, as in torchvision.

use std::path::{Path, PathBuf};

use image::DynamicImage;
use serde::{Deserialize, Serialize};

use super::error::DataError;
use super::resize::{luma, resize_plane};
use super::shape::InputShape;
use super::split::split;

/// The file extensions read as images (compared without case).
pub const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "gif", "webp"];

/// Files passed over while listing a folder, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Files directly in a split folder, beside the class folders.
    pub files_at_class_level: usize,
    /// Hidden files and folders (names starting with a dot).
    pub hidden: usize,
    /// Files whose extension is not an image type labpipe reads.
    pub not_images: usize,
}

impl Skipped {
    /// True when nothing was skipped.
    pub fn is_empty(&self) -> bool {
        *self == Skipped::default()
    }

    /// The counts in words, e.g. "2 hidden, 1 not an image".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (n, what) in [
            (self.files_at_class_level, "at the class level (not in a class folder)"),
            (self.hidden, "hidden"),
            (self.not_images, "not of an image type (png, jpg, jpeg, bmp, gif, webp)"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        parts.join(", ")
    }

    fn add(&mut self, other: Skipped) {
        self.files_at_class_level += other.files_at_class_level;
        self.hidden += other.hidden;
        self.not_images += other.not_images;
    }
}

/// One split's images: (path, label) in torchvision's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SplitListing {
    /// The image files and their labels.
    pub items: Vec<(PathBuf, u8)>,
}

/// What a folder holds, listed without decoding anything.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    /// Class names, sorted, index = label.
    pub classes: Vec<String>,
    /// Training images.
    pub train: SplitListing,
    /// Test images, when the folder has `test/`.
    pub test: Option<SplitListing>,
    /// What was skipped.
    pub skipped: Skipped,
}

impl Listing {
    /// Every image file, training then test.
    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        let test = self.test.iter().flat_map(|t| t.items.iter());
        self.train.items.iter().chain(test).map(|(p, _)| p)
    }
}

fn hidden(name: &str) -> bool {
    name.starts_with('.')
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io("list", dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io("list", dir, e))?;
        let path = entry.path();
        // Links are followed, as torchvision's os.walk(followlinks=True) does.
        let is_dir = path.is_dir();
        out.push((entry.file_name().to_string_lossy().into_owned(), path, is_dir));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The class folders of a split folder, sorted, and what else it holds.
fn classes_of(dir: &Path) -> Result<(Vec<(String, PathBuf)>, Skipped), DataError> {
    let mut skipped = Skipped::default();
    let mut classes = Vec::new();
    for (name, path, is_dir) in read_dir_sorted(dir)? {
        if hidden(&name) {
            skipped.hidden += 1;
        } else if is_dir {
            classes.push((name, path));
        } else {
            skipped.files_at_class_level += 1;
        }
    }
    Ok((classes, skipped))
}

/// The images under one class folder, recursively, in sorted order.
fn images_under(dir: &Path, label: u8, items: &mut Vec<(PathBuf, u8)>, skipped: &mut Skipped) -> Result<(), DataError> {
    for (name, path, is_dir) in read_dir_sorted(dir)? {
        if hidden(&name) {
            skipped.hidden += 1;
        } else if is_dir {
            images_under(&path, label, items, skipped)?;
        } else if is_image(&path) {
            items.push((path, label));
        } else {
            skipped.not_images += 1;
        }
    }
    Ok(())
}

fn list_split(dir: &Path, classes: &[(String, PathBuf)], skipped: &mut Skipped) -> Result<SplitListing, DataError> {
    let mut items = Vec::new();
    for (label, (_, path)) in classes.iter().enumerate() {
        let before = items.len();
        images_under(path, label as u8, &mut items, skipped)?;
        if items.len() == before {
            return Err(DataError::EmptyClass { path: path.clone() });
        }
    }
    Ok(SplitListing { items })
}

/// Lists `root` without decoding: `root/train` + `root/test`, or `root/<class>` (then `test` is `None`).
pub fn list(root: &Path) -> Result<Listing, DataError> {
    if !root.is_dir() {
        return Err(DataError::FolderMissing { path: root.to_path_buf() });
    }
    let train_dir = root.join("train");
    let test_dir = root.join("test");
    let split_layout = train_dir.is_dir();
    let base = if split_layout { train_dir.clone() } else { root.to_path_buf() };
    let (classes, mut skipped) = classes_of(&base)?;
    match classes.len() {
        0 => return Err(DataError::NoClasses { path: base }),
        1 => {
            return Err(DataError::OneClass {
                path: base,
                class: classes[0].0.clone(),
            });
        }
        n if n > 256 => return Err(DataError::TooManyClasses { path: base, count: n }),
        _ => {}
    }
    let train = list_split(&base, &classes, &mut skipped)?;
    let test = if split_layout && test_dir.is_dir() {
        let (test_classes, test_skipped) = classes_of(&test_dir)?;
        skipped.add(test_skipped);
        let names = |c: &[(String, PathBuf)]| c.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        if names(&test_classes) != names(&classes) {
            return Err(DataError::TestClassesDiffer {
                train: train_dir,
                test: test_dir,
                train_classes: names(&classes),
                test_classes: names(&test_classes),
            });
        }
        Some(list_split(&test_dir, &test_classes, &mut skipped)?)
    } else {
        None
    };
    Ok(Listing {
        classes: classes.into_iter().map(|(n, _)| n).collect(),
        train,
        test,
        skipped,
    })
}

/// The shape of the folder's first training image, read from its header only.
pub fn first_image_shape(root: &Path, channels: usize) -> Result<InputShape, DataError> {
    let listing = list(root)?;
    let Some((path, _)) = listing.train.items.first() else {
        return Err(DataError::NoClasses { path: root.to_path_buf() });
    };
    let (w, h) = image::image_dimensions(path).map_err(|e| DataError::UnreadableImage {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(InputShape::new(channels, h as usize, w as usize))
}

/// Images as read: channel-major bytes and labels, all of one shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The shape of every image.
    pub shape: InputShape,
    /// `labels.len() * shape.values()` bytes.
    pub pixels: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u8>,
}

/// Decodes one image into channel-major bytes of `channels` (as PIL's `convert`) and, when `size` is given,
/// resized to it (as PIL's `resize(…, BILINEAR)`, what torchvision's `Resize` does to a PIL image).
pub fn decode(path: &Path, channels: usize, size: Option<(usize, usize)>) -> Result<(InputShape, Vec<u8>), DataError> {
    let unreadable = |reason: String| DataError::UnreadableImage {
        path: path.to_path_buf(),
        reason,
    };
    let img = image::io::Reader::open(path)
        .map_err(|e| unreadable(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| unreadable(e.to_string()))?
        .decode()
        .map_err(|e| unreadable(e.to_string()))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let planes: Vec<Vec<u8>> = match channels {
        1 => vec![match img {
            DynamicImage::ImageLuma8(g) => g.into_raw(),
            DynamicImage::ImageLumaA8(_) => img.to_luma8().into_raw(),
            other => other.to_rgb8().chunks_exact(3).map(|p| luma(p[0], p[1], p[2])).collect(),
        }],
        _ => {
            let rgb = img.to_rgb8().into_raw();
            (0..3).map(|c| rgb.iter().skip(c).step_by(3).copied().collect()).collect()
        }
    };
    let (out_h, out_w) = size.unwrap_or((h, w));
    let mut bytes = Vec::with_capacity(channels * out_h * out_w);
    for plane in &planes {
        if (out_h, out_w) == (h, w) {
            bytes.extend_from_slice(plane);
        } else {
            bytes.extend(resize_plane(plane, h, w, out_h, out_w));
        }
    }
    Ok((InputShape::new(channels, out_h, out_w), bytes))
}

/// Decodes `items` (in parallel), checking that every image has the shape of the first.
pub fn decode_all(
    items: &[(PathBuf, u8)],
    channels: usize,
    size: Option<(usize, usize)>,
) -> Result<Decoded, DataError> {
    use rayon::prelude::*;
    let decoded: Vec<(InputShape, Vec<u8>)> = items
        .par_iter()
        .map(|(p, _)| decode(p, channels, size))
        .collect::<Result<_, _>>()?;
    let Some((shape, _)) = decoded.first() else {
        return Err(DataError::NoImages);
    };
    let shape = *shape;
    let mut pixels = Vec::with_capacity(decoded.len() * shape.values());
    for (i, (s, bytes)) in decoded.into_iter().enumerate() {
        if s != shape {
            return Err(DataError::MixedSizes {
                path: items[i].0.clone(),
                size: (s.height, s.width),
                first: items[0].0.clone(),
                first_size: (shape.height, shape.width),
            });
        }
        pixels.extend(bytes);
    }
    Ok(Decoded {
        shape,
        pixels,
        labels: items.iter().map(|(_, l)| *l).collect(),
    })
}

/// The training and test items: from `test/`, or `test_count` held out of the training folder with a fixed
/// seed (so that runs with different `train.seed`s are tested on the same images).
pub fn split_items(listing: &Listing, test_count: Option<usize>) -> Result<(Vec<(PathBuf, u8)>, Vec<(PathBuf, u8)>), DataError> {
    if let Some(test) = &listing.test {
        return Ok((listing.train.items.clone(), test.items.clone()));
    }
    let n = listing.train.items.len();
    let Some(count) = test_count else {
        return Err(DataError::NoTestImages { count: n });
    };
    if count == 0 || count >= n {
        return Err(DataError::TestSplitTooLarge { count, available: n });
    }
    let s = split(n, count, 0);
    let pick = |idx: &[usize]| idx.iter().map(|&i| listing.train.items[i].clone()).collect();
    Ok((pick(&s.train), pick(&s.val)))
}

/// A fingerprint of the images a folder holds: blake3 over the sorted relative paths, labels and bytes.
pub fn fingerprint(root: &Path) -> Result<String, DataError> {
    let listing = list(root)?;
    let mut h = blake3::Hasher::new();
    for name in &listing.classes {
        h.update(name.as_bytes());
        h.update(b"\n");
    }
    for p in listing.files() {
        let rel = p.strip_prefix(root).unwrap_or(p);
        h.update(rel.to_string_lossy().as_bytes());
        h.update(b"\0");
        let mut f = std::fs::File::open(p).map_err(|e| DataError::io("read", p, e))?;
        std::io::copy(&mut f, &mut h).map_err(|e| DataError::io("read", p, e))?;
    }
    Ok(h.finalize().to_hex()[..32].to_string())
}
