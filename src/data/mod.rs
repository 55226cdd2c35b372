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

use shape::InputShape;

/// A set of labelled images of one shape, held as raw bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    /// The shape every image has.
    pub shape: InputShape,
    /// `len() * shape.values()` bytes, image after image, each channel-major (all of channel 0, then 1, ...).
    pub pixels: Vec<u8>,
    /// One class index per image.
    pub labels: Vec<u8>,
}

impl ImageSet {
    /// An empty set of images of `shape`.
    pub fn empty(shape: InputShape) -> Self {
        ImageSet {
            shape,
            pixels: Vec::new(),
            labels: Vec::new(),
        }
    }

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
        let n = self.shape.values();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// A new set holding the images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> ImageSet {
        let mut pixels = Vec::with_capacity(indices.len() * self.shape.values());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        ImageSet {
            shape: self.shape,
            pixels,
            labels,
        }
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
