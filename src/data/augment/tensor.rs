//! Kernels on the normalized float image: torchvision's `ToTensor` + `Normalize`, and `TF.erase`.

use crate::data::{IMAGE_BYTES, IMAGE_SIDE};

const PLANE: usize = IMAGE_SIDE * IMAGE_SIDE;

/// Writes `(x / 255 - mean[c]) / std[c]` for each byte of `src` into `out` (3072 floats, CHW), with the
/// same f32 operations as torchvision's `ToTensor` then `Normalize`, so the floats are bit-identical.
///
/// # Panics
/// If `src` or `out` is not `IMAGE_BYTES` long.
pub fn to_normalized(src: &[u8], mean: [f32; 3], std: [f32; 3], out: &mut [f32]) {
    assert_eq!(src.len(), IMAGE_BYTES, "input must be one 32×32 RGB image");
    assert_eq!(out.len(), IMAGE_BYTES, "output must hold one 32×32 RGB image");
    for c in 0..3 {
        let (m, s) = (mean[c], std[c]);
        let plane = &src[c * PLANE..(c + 1) * PLANE];
        for (o, &v) in out[c * PLANE..(c + 1) * PLANE].iter_mut().zip(plane) {
            *o = (v as f32 / 255.0 - m) / s;
        }
    }
}

/// Sets the `height`×`width` rectangle at (`top`, `left`) of each channel `c` of the CHW image to
/// `value[c]` (torchvision `TF.erase` with a per-channel value).
///
/// # Panics
/// If the rectangle leaves the 32×32 image or `img` is not `IMAGE_BYTES` long.
pub fn erase_with(img: &mut [f32], top: usize, left: usize, height: usize, width: usize, value: [f32; 3]) {
    assert_eq!(img.len(), IMAGE_BYTES, "image must hold one 32×32 RGB image");
    assert!(
        top + height <= IMAGE_SIDE && left + width <= IMAGE_SIDE,
        "erased rectangle {height}×{width} at ({top}, {left}) leaves the 32×32 image"
    );
    for (c, v) in value.into_iter().enumerate() {
        for row in top..top + height {
            let start = c * PLANE + row * IMAGE_SIDE + left;
            img[start..start + width].fill(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_maps_0_and_255_to_the_ends_of_the_range() {
        let mut src = vec![0u8; IMAGE_BYTES];
        src[PLANE..].fill(255);
        let mut out = vec![0f32; IMAGE_BYTES];
        to_normalized(&src, [0.5, 0.5, 0.0], [0.5, 0.25, 1.0], &mut out);
        assert_eq!((out[0], out[PLANE], out[2 * PLANE]), (-1.0, 2.0, 1.0));
    }

    #[test]
    fn erase_touches_only_the_rectangle() {
        let mut img = vec![7f32; IMAGE_BYTES];
        erase_with(&mut img, 1, 2, 3, 4, [0.0, 1.0, 2.0]);
        let changed: Vec<usize> = (0..IMAGE_BYTES).filter(|&i| img[i] != 7.0).collect();
        assert_eq!(changed.len(), 3 * 12);
        assert_eq!(img[PLANE + 32 + 2], 1.0);
        assert_eq!(img[2 * PLANE + 3 * 32 + 5], 2.0);
        assert_eq!(img[2 * PLANE + 4 * 32 + 5], 7.0);
    }
}
