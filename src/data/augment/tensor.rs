//! Kernels on the normalized float image: torchvision's `ToTensor` + `Normalize`, and `TF.erase`.

use crate::data::shape::InputShape;

/// Writes `(x / 255 - mean[c]) / std[c]` for each byte of `src` (one image of `shape`, CHW) into `out`, with
/// the same f32 operations as torchvision's `ToTensor` then `Normalize`, so the floats are bit-identical.
///
/// # Panics
/// If `src` or `out` does not hold one image of `shape`, or `mean`/`std` do not have one value per channel.
pub fn to_normalized(shape: InputShape, src: &[u8], mean: &[f32], std: &[f32], out: &mut [f32]) {
    assert_eq!(src.len(), shape.values(), "input must be one {shape} image");
    assert_eq!(out.len(), shape.values(), "output must hold one {shape} image");
    assert!(
        mean.len() == shape.channels && std.len() == shape.channels,
        "normalization needs one mean and std per channel ({}), got {} and {}",
        shape.channels,
        mean.len(),
        std.len()
    );
    let plane = shape.plane();
    for c in 0..shape.channels {
        let (m, s) = (mean[c], std[c]);
        let src_plane = &src[c * plane..(c + 1) * plane];
        for (o, &v) in out[c * plane..(c + 1) * plane].iter_mut().zip(src_plane) {
            *o = (v as f32 / 255.0 - m) / s;
        }
    }
}

/// Sets the `height`×`width` rectangle at (`top`, `left`) of each channel `c` of the CHW image to
/// `value[c]` (torchvision `TF.erase` with a per-channel value).
///
/// # Panics
/// If the rectangle leaves the image, `img` does not hold one image of `shape` or `value` has fewer values
/// than channels.
pub fn erase_with(
    shape: InputShape,
    img: &mut [f32],
    [top, left]: [usize; 2],
    [height, width]: [usize; 2],
    value: &[f32],
) {
    assert_eq!(img.len(), shape.values(), "image must hold one {shape} image");
    assert!(
        top + height <= shape.height && left + width <= shape.width,
        "erased rectangle {height}×{width} at ({top}, {left}) leaves the {shape} image"
    );
    let plane = shape.plane();
    for (c, &v) in value[..shape.channels].iter().enumerate() {
        for row in top..top + height {
            let start = c * plane + row * shape.width + left;
            img[start..start + width].fill(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RGB: InputShape = InputShape::CIFAR;
    const PLANE: usize = RGB.plane();

    #[test]
    fn normalization_maps_0_and_255_to_the_ends_of_the_range() {
        let mut src = vec![0u8; RGB.values()];
        src[PLANE..].fill(255);
        let mut out = vec![0f32; RGB.values()];
        to_normalized(RGB, &src, &[0.5, 0.5, 0.0], &[0.5, 0.25, 1.0], &mut out);
        assert_eq!((out[0], out[PLANE], out[2 * PLANE]), (-1.0, 2.0, 1.0));
    }

    #[test]
    fn erase_touches_only_the_rectangle() {
        let mut img = vec![7f32; RGB.values()];
        erase_with(RGB, &mut img, [1, 2], [3, 4], &[0.0, 1.0, 2.0]);
        let changed: Vec<usize> = (0..RGB.values()).filter(|&i| img[i] != 7.0).collect();
        assert_eq!(changed.len(), 3 * 12);
        assert_eq!(img[PLANE + 32 + 2], 1.0);
        assert_eq!(img[2 * PLANE + 3 * 32 + 5], 2.0);
        assert_eq!(img[2 * PLANE + 4 * 32 + 5], 7.0);
    }

    #[test]
    fn greyscale_and_oblong_images_use_their_own_plane() {
        let shape = InputShape::new(1, 2, 3);
        let mut out = vec![0f32; 6];
        to_normalized(shape, &[0, 51, 102, 153, 204, 255], &[0.5], &[0.5], &mut out);
        assert_eq!((out[0], out[5]), (-1.0, 1.0));
        let before = out.clone();
        erase_with(shape, &mut out, [1, 1], [1, 2], &[9.0]);
        assert_eq!(&out[..4], &before[..4]);
        assert_eq!(&out[4..], [9.0, 9.0]);
    }
}
