//! Training-time augmentation (being written: issue [data]).

use serde::{Deserialize, Serialize};

/// One augmentation step as declared under `data.augment`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Augment {}

impl Augment {
    /// Check the parameters; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        match *self {}
    }
}

/// Apply `augs` to `src` and normalize into `out`.
pub fn augment_image(
    augs: &[Augment],
    src: &[u8],
    mean: [f32; 3],
    std: [f32; 3],
    _rng: &mut crate::rng::Rng,
    out: &mut [f32],
) {
    debug_assert!(augs.is_empty());
    crate::data::normalize::to_normalized(src, &crate::data::normalize::NormStats { mean, std }, out);
}
