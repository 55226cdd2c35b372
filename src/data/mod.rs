//! Where data enters labpipe: datasets in memory, the split, normalization, augmentation and batches.

pub mod augment;
pub mod batches;
pub mod cifar10;
pub mod cifar100;
pub mod cifar10_layout;
pub mod config;
pub mod download;
pub mod error;
pub mod idx;
pub mod image_folder;
pub mod normalize;
pub mod resize;
pub mod shape;
pub mod source;
pub mod split;
pub mod synthetic;

/// Bytes of one 32×32 RGB image, channel-major (all red, then green, then blue), as CIFAR-10 stores it.
pub const IMAGE_BYTES: usize = 3 * 32 * 32;
/// Image side in pixels.
pub const IMAGE_SIDE: usize = 32;

/// A set of labelled 32×32 RGB images held as raw bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageSet {
    /// `len() * IMAGE_BYTES` bytes, image after image, each channel-major.
    pub pixels: Vec<u8>,
    /// One class index per image.
    pub labels: Vec<u8>,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The bytes of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]
    }

    /// A new set holding the images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> ImageSet {
        let mut pixels = Vec::with_capacity(indices.len() * IMAGE_BYTES);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        ImageSet { pixels, labels }
    }
}

/// A dataset as loaded: the training and test sets and the class names.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The full training set (the validation split is taken from it later).
    pub train: ImageSet,
    /// The held-out test set.
    pub test: ImageSet,
    /// Class names, index = label.
    pub class_names: Vec<String>,
}
