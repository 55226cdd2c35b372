//! The `data:` section of a pipeline file: which images, how they are split, normalized and augmented.
//! Parsed by src/spec, consumed here in src/data.

use super::augment::Augment;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    /// The embedded synthetic dataset: generated from the seed, no download.
    Synthetic,
    /// CIFAR-10 binary files (downloaded when missing).
    Cifar10,
    /// CIFAR-100 binary files (downloaded when missing); `labels: fine | coarse`.
    Cifar100,
    /// MNIST handwritten digits: the four IDX files (downloaded when missing).
    Mnist,
    /// Fashion-MNIST: the four IDX files (downloaded when missing).
    FashionMnist,
    /// A folder of one's own images in torchvision's ImageFolder layout (`root/<split>/<class>/<image>`).
    ImageFolder,
}

impl DatasetKind {
    /// Training images when `data.train_size` is not given: the whole official training set (`None` for an
    /// image folder, whose size is known only once it is read).
    pub fn default_train_size(self) -> Option<usize> {
        match self {
            DatasetKind::Synthetic => Some(super::synthetic::DEFAULT_TRAIN),
            DatasetKind::Cifar10 => Some(super::cifar10::TRAIN_IMAGES),
            DatasetKind::Cifar100 => Some(50_000),
            DatasetKind::Mnist | DatasetKind::FashionMnist => Some(60_000),
            DatasetKind::ImageFolder => None,
        }
    }
}

/// `data:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Which dataset.
    pub dataset: DatasetKind,
    /// CIFAR-10 folder (default `data/cifar10`).
    #[serde(default)]
    pub root: Option<String>,
    /// CIFAR-10 archive URL (a mirror; default the dataset authors').
    #[serde(default)]
    pub url: Option<String>,
    /// MD5 of the archive at `url` (default: the official archive's), for a mirror that serves another archive.
    #[serde(default)]
    pub md5: Option<String>,
    /// Images in the training set (synthetic: how many to generate; cifar10: use the first N).
    #[serde(default)]
    pub train_size: Option<usize>,
    /// Images in the test set (synthetic: how many to generate; cifar10: use the first N).
    #[serde(default)]
    pub test_size: Option<usize>,
    /// Validation images taken at random from the training set: a count, or a fraction below 1.
    #[serde(default = "default_val_split")]
    pub val_split: ValSplit,
    /// How inputs are normalized.
    #[serde(default)]
    pub normalize: Normalize,
    /// Training-time augmentations, in order.
    #[serde(default)]
    pub augment: Vec<Augment>,
    /// Background batch workers (does not change results; default: the core count).
    #[serde(default)]
    pub workers: Option<usize>,
    /// cifar100: which labels, the 100 fine classes or the 20 coarse superclasses (default fine).
    #[serde(default)]
    pub labels: Option<Cifar100Labels>,
    /// image_folder: resize every image to this side, or to `[H, W]` (as torchvision's `Resize`).
    #[serde(default)]
    pub image_size: Option<ImageSize>,
    /// image_folder: 1 (greyscale, as PIL's `convert("L")`) or 3 (RGB, `convert("RGB")`); default 3.
    #[serde(default)]
    pub channels: Option<usize>,
    /// image_folder without a `test/` folder: the share (fraction below 1) or count of images held out for testing.
    #[serde(default)]
    pub test_split: Option<ValSplit>,
}

/// `data.labels` for CIFAR-100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cifar100Labels {
    /// The 100 fine classes.
    #[default]
    Fine,
    /// The 20 coarse superclasses.
    Coarse,
}

/// `data.image_size`: one side (a square) or `[H, W]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageSize {
    /// A square of this side.
    Square(usize),
    /// Height and width.
    HeightWidth([usize; 2]),
}

impl ImageSize {
    /// `(height, width)`.
    pub fn height_width(self) -> (usize, usize) {
        match self {
            ImageSize::Square(s) => (s, s),
            ImageSize::HeightWidth([h, w]) => (h, w),
        }
    }
}

fn default_val_split() -> ValSplit {
    ValSplit::Fraction(0.1)
}

/// `data.val_split`: a count or a fraction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ValSplit {
    /// This many images.
    Count(usize),
    /// This share of the training set.
    Fraction(f64),
}

impl ValSplit {
    /// Number of validation images out of `train_len`.
    pub fn count(self, train_len: usize) -> usize {
        match self {
            ValSplit::Count(n) => n,
            ValSplit::Fraction(f) => (f * train_len as f64).round() as usize,
        }
    }
}

impl<'de> Deserialize<'de> for ValSplit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ValSplit;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a count of images (e.g. 5000) or a fraction below 1 (e.g. 0.1)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ValSplit, E> {
                Ok(ValSplit::Count(v as usize))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ValSplit, E> {
                usize::try_from(v)
                    .map(ValSplit::Count)
                    .map_err(|_| E::custom("val_split must not be negative"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ValSplit, E> {
                if (0.0..1.0).contains(&v) {
                    Ok(ValSplit::Fraction(v))
                } else {
                    Err(E::custom(format!(
                        "a fractional val_split must be in [0, 1), got {v}; write a count as a whole number"
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `data.normalize`.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Normalize {
    /// Pixels scaled to [0, 1] only.
    #[default]
    None,
    /// Per-channel mean and std of the first training image (the seed's method).
    FirstImage,
    /// Per-channel mean and std over the training split.
    TrainMeanStd,
    /// Given values, one per image channel (checked against the dataset's channels when the spec is read).
    Fixed {
        /// Per-channel mean.
        mean: Vec<f64>,
        /// Per-channel std.
        std: Vec<f64>,
    },
}

/// The normalize modes written as words.
pub const NORMALIZE_MODES: &[&str] = &["none", "first_image", "train_mean_std"];

impl Serialize for Normalize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Normalize::None => s.serialize_str("none"),
            Normalize::FirstImage => s.serialize_str("first_image"),
            Normalize::TrainMeanStd => s.serialize_str("train_mean_std"),
            Normalize::Fixed { mean, std } => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("mean", mean)?;
                m.serialize_entry("std", std)?;
                m.end()
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixedNormalize {
    mean: Vec<f64>,
    std: Vec<f64>,
}

impl<'de> Deserialize<'de> for Normalize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Normalize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "none, first_image, train_mean_std, or {mean: [...], std: [...]} with one value per channel",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Normalize, E> {
                match v {
                    "none" => Ok(Normalize::None),
                    "first_image" => Ok(Normalize::FirstImage),
                    "train_mean_std" => Ok(Normalize::TrainMeanStd),
                    other => Err(E::unknown_variant(
                        other,
                        &["none", "first_image", "train_mean_std", "{mean, std}"],
                    )),
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<Normalize, E> {
                Ok(Normalize::None)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Normalize, A::Error> {
                let f = FixedNormalize::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if f.std.iter().any(|s| *s <= 0.0) {
                    return Err(de::Error::custom("every `std` value must be positive"));
                }
                Ok(Normalize::Fixed {
                    mean: f.mean,
                    std: f.std,
                })
            }
        }
        d.deserialize_any(V)
    }
}
