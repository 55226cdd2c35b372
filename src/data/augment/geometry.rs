//! Deterministic geometric kernels on one channel-major `u8` image of any [`InputShape`] (1 channel: a PIL
//! `L` image, 3: `RGB`), bit-exact with what torchvision does to a PIL image: `TF.pad` + `TF.crop`, `TF.hflip`, and `TF.rotate` (PIL `Image.rotate`, `expand=False`).
//!
//! Rotation follows Pillow's code path by path (`Image.rotate` in Python, `ImagingTransformAffine` and the
//! bilinear filter in `libImaging/Geometry.c`), because a re-derivation "with the same maths" differs on
//! hundreds of pixels: PIL rounds the matrix to 15 decimals, nearest-neighbour runs in 16.16 fixed point,
//! bilinear truncates instead of rounding, and 90/180/270° take transpose fast paths.

use std::io::Write;

use crate::data::shape::InputShape;

use super::config::{Fill, Interpolation, Padding, PaddingMode};

/// Panics unless `src` and `out` each hold one image of `shape`.
pub(super) fn check_len(shape: InputShape, src: &[u8], out: &[u8]) {
    assert_eq!(src.len(), shape.values(), "input must be one {shape} image");
    assert_eq!(out.len(), shape.values(), "output must hold one {shape} image");
}

/// Pads `src` by `padding` (border filled per `mode`, `fill` in constant mode) and writes the window of the
/// image's own size whose top-left corner is at (`top`, `left`) of the padded image into `out`: torchvision's
/// `TF.crop(TF.pad(..))`.
///
/// # Panics
/// If the window leaves the padded image (`top > padding.top + padding.bottom`, likewise for `left`) or a
/// slice does not hold one image of `shape`.
#[allow(clippy::too_many_arguments)]
pub fn crop_with(
    shape: InputShape,
    src: &[u8],
    top: usize,
    left: usize,
    padding: Padding,
    fill: Fill,
    mode: PaddingMode,
    out: &mut [u8],
) {
    check_len(shape, src, out);
    assert!(
        top <= padding.top + padding.bottom && left <= padding.left + padding.right,
        "crop window at ({top}, {left}) leaves the image padded by {padding:?}"
    );
    // Source row/column of each output row/column, or -1 for the constant fill.
    let (height, width, plane) = (shape.height, shape.width, shape.plane());
    let rows: Vec<i32> = (0..height)
        .map(|i| padded_source(top as i64 + i as i64 - padding.top as i64, height, mode))
        .collect();
    let cols: Vec<i32> = (0..width)
        .map(|i| padded_source(left as i64 + i as i64 - padding.left as i64, width, mode))
        .collect();
    let contiguous = cols[0] >= 0 && cols[width - 1] == cols[0] + width as i32 - 1;
    for c in 0..shape.channels {
        let src_plane = &src[c * plane..(c + 1) * plane];
        let out_plane = &mut out[c * plane..(c + 1) * plane];
        for (out_row, &row) in out_plane.chunks_exact_mut(width).zip(&rows) {
            if row < 0 {
                out_row.fill(fill.level(c));
                continue;
            }
            let src_row = &src_plane[row as usize * width..(row as usize + 1) * width];
            if contiguous {
                out_row.copy_from_slice(src_row);
            } else {
                for (o, &col) in out_row.iter_mut().zip(&cols) {
                    *o = if col < 0 {
                        fill.level(c)
                    } else {
                        src_row[col as usize]
                    };
                }
            }
        }
    }
}

/// Index into the unpadded axis of length `n` that padded position `i` (relative to the image's first pixel)
/// copies, or -1 for the constant fill; reflect/symmetric are periodic, which is what `np.pad` gives for any
/// width.
fn padded_source(i: i64, n: usize, mode: PaddingMode) -> i32 {
    let n = n as i64;
    let k = if (0..n).contains(&i) {
        i
    } else {
        match mode {
            PaddingMode::Constant => -1,
            PaddingMode::Edge => i.clamp(0, n - 1),
            // A one-pixel axis has nothing to mirror but its only pixel (np.pad gives the same).
            PaddingMode::Reflect if n == 1 => 0,
            PaddingMode::Reflect => {
                let k = i.rem_euclid(2 * (n - 1));
                if k < n { k } else { 2 * (n - 1) - k }
            }
            PaddingMode::Symmetric => {
                let k = i.rem_euclid(2 * n);
                if k < n { k } else { 2 * n - 1 - k }
            }
        }
    };
    k as i32
}

/// Mirrors `src` left-right into `out` (torchvision `TF.hflip`).
pub fn hflip(shape: InputShape, src: &[u8], out: &mut [u8]) {
    check_len(shape, src, out);
    for (s, o) in src
        .chunks_exact(shape.width)
        .zip(out.chunks_exact_mut(shape.width))
    {
        for (o, s) in o.iter_mut().zip(s.iter().rev()) {
            *o = *s;
        }
    }
}

/// Rotates `src` by `angle` degrees counter-clockwise about `center` (pixel coordinates from the top-left
/// corner; `None` = the image centre (W/2, H/2)) into `out`, uncovered pixels set to `fill`: torchvision
/// `TF.rotate(pil_image, angle, interpolation, expand=False, center, fill)`, i.e. PIL `Image.rotate`.
///
/// # Panics
/// If `angle` or `center` is not finite or a slice does not hold one image of `shape`.
pub fn rotate_with(
    shape: InputShape,
    src: &[u8],
    angle: f64,
    interpolation: Interpolation,
    fill: Fill,
    center: Option<[f64; 2]>,
    out: &mut [u8],
) {
    check_len(shape, src, out);
    assert!(angle.is_finite(), "rotation angle must be finite, got {angle}");
    let angle = python_mod(angle, 360.0);
    if center.is_none() {
        // PIL's fast paths (any filter), which differ from the affine path by the half-pixel centre.
        if angle == 0.0 {
            out.copy_from_slice(src);
            return;
        }
        // Quarter turns keep the size only for square images; PIL sends other shapes down the affine path.
        if angle == 180.0 || ((angle == 90.0 || angle == 270.0) && shape.height == shape.width) {
            transpose(shape, src, angle as u32, out);
            return;
        }
    }
    let center = center.unwrap_or([shape.width as f64 / 2.0, shape.height as f64 / 2.0]);
    assert!(
        center.iter().all(|c| c.is_finite()),
        "rotation centre must be finite, got {center:?}"
    );
    let m = pil_rotation_matrix(angle, center);
    let plane = shape.plane();
    for c in 0..shape.channels {
        out[c * plane..(c + 1) * plane].fill(fill.level(c));
    }
    match interpolation {
        Interpolation::Nearest => affine_nearest(shape, src, &m, out),
        Interpolation::Bilinear => affine_bilinear(shape, src, &m, out),
    }
}

/// Python's float `%`: the result takes the divisor's sign.
fn python_mod(x: f64, m: f64) -> f64 {
    let r = x % m;
    if r != 0.0 {
        if (m < 0.0) != (r < 0.0) { r + m } else { r }
    } else {
        0.0f64.copysign(m)
    }
}

/// PIL's `Image.transpose` for ROTATE_180, and ROTATE_90 / ROTATE_270 (counter-clockwise) of a square image.
fn transpose(shape: InputShape, src: &[u8], degrees: u32, out: &mut [u8]) {
    let (height, width, plane) = (shape.height, shape.width, shape.plane());
    for c in 0..shape.channels {
        let s = &src[c * plane..(c + 1) * plane];
        let o = &mut out[c * plane..(c + 1) * plane];
        for r in 0..height {
            for col in 0..width {
                let (sr, sc) = match degrees {
                    90 => (col, width - 1 - r),
                    180 => (height - 1 - r, width - 1 - col),
                    _ => (height - 1 - col, r),
                };
                o[r * width + col] = s[sr * width + sc];
            }
        }
    }
}

/// The inverse affine matrix `Image.rotate` hands to `Image.transform`: output pixel → source position.
fn pil_rotation_matrix(angle: f64, center: [f64; 2]) -> [f64; 6] {
    // math.radians is x * (pi / 180); Python negates it for the inverse map.
    let rad = -(angle * (std::f64::consts::PI / 180.0));
    let (cos, sin) = (python_round15(rad.cos()), python_round15(rad.sin()));
    let neg_sin = python_round15(-rad.sin());
    let mut m = [cos, sin, 0.0, neg_sin, cos, 0.0];
    let (x, y) = (-center[0], -center[1]);
    m[2] = m[0] * x + m[1] * y + 0.0;
    m[5] = m[3] * x + m[4] * y + 0.0;
    m[2] += center[0];
    m[5] += center[1];
    m
}

/// Python's `round(x, 15)` for `|x| <= 1`: the double nearest to `x` rounded half-to-even to 15 decimals.
fn python_round15(x: f64) -> f64 {
    debug_assert!(x.abs() <= 1.0);
    let scaled = x * 65536.0;
    if scaled.fract() == 0.0 {
        // x = j / 2^16 has an exact 16-decimal expansion that may end in a tie: x·10^15 = j·5^15 / 2.
        let n = scaled as i128 * 5i128.pow(15);
        let (q, r) = (n.div_euclid(2), n.rem_euclid(2));
        let q = if r == 1 && q % 2 != 0 { q + 1 } else { q };
        return (q as f64 / 1e15).copysign(x);
    }
    // Otherwise the exact decimal expansion cannot tie at the 15th digit, and Rust's fixed-precision
    // formatting and parsing are both correctly rounded, as CPython's dtoa/strtod are.
    let mut buf = [0u8; 32];
    let len = {
        let mut cursor = &mut buf[..];
        write!(cursor, "{x:.15}").expect("|x| <= 1 fits in 32 bytes");
        32 - cursor.len()
    };
    std::str::from_utf8(&buf[..len])
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("a formatted f64 parses back")
}

/// C's `FLOOR(v)` for coordinates inside the image, without a libm call on baseline x86-64.
fn floor(v: f64) -> i32 {
    let t = v as i32;
    if t as f64 > v { t - 1 } else { t }
}

/// C's `COORD(v)` in Geometry.c: -1 for negatives, truncation otherwise.
fn coord(v: f64) -> i32 {
    if v < 0.0 { -1 } else { v as i32 }
}

fn copy_pixel(shape: InputShape, src: &[u8], from: usize, out: &mut [u8], to: usize) {
    let plane = shape.plane();
    for c in 0..shape.channels {
        out[c * plane + to] = src[c * plane + from];
    }
}

/// `ImagingTransformAffine` with NEAREST: the scaling path, the 16.16 fixed-point path, or the float path.
fn affine_nearest(shape: InputShape, src: &[u8], a: &[f64; 6], out: &mut [u8]) {
    let (height, width) = (shape.height, shape.width);
    let (h, w) = (height as i32, width as i32);
    if a[1] == 0.0 && a[3] == 0.0 {
        // ImagingScaleAffine.
        let mut xintab = vec![0usize; width];
        let (mut xmin, mut xmax) = (width, 0);
        let mut xo = a[2] + a[0] * 0.5;
        let mut yo = a[5] + a[4] * 0.5;
        for (x, tab) in xintab.iter_mut().enumerate() {
            let xin = coord(xo);
            if (0..w).contains(&xin) {
                xmax = x + 1;
                xmin = xmin.min(x);
                *tab = xin as usize;
            }
            xo += a[0];
        }
        for y in 0..height {
            let yi = coord(yo);
            if (0..h).contains(&yi) {
                for (x, &xin) in xintab.iter().enumerate().take(xmax).skip(xmin) {
                    copy_pixel(shape, src, yi as usize * width + xin, out, y * width + x);
                }
            }
            yo += a[4];
        }
        return;
    }
    let check_fixed = |x: f64, y: f64| {
        (x * a[0] + y * a[1] + a[2]).abs() < 32768.0 && (x * a[3] + y * a[4] + a[5]).abs() < 32768.0
    };
    let (fw, fh) = (width as f64, height as f64);
    if check_fixed(0.0, 0.0) && check_fixed(fw, fh) && check_fixed(0.0, fh) && check_fixed(fw, 0.0) {
        // affine_fixed: FIX(v) = floor(v * 65536 + 0.5), then integer steps and arithmetic shifts.
        let fix = |v: f64| (v * 65536.0 + 0.5).floor() as i32;
        let (a0, a1, a3, a4) = (fix(a[0]), fix(a[1]), fix(a[3]), fix(a[4]));
        let mut a2 = fix(a[2] + a[0] * 0.5 + a[1] * 0.5);
        let mut a5 = fix(a[5] + a[3] * 0.5 + a[4] * 0.5);
        for y in 0..height {
            let (mut xx, mut yy) = (a2, a5);
            for x in 0..width {
                let xin = xx >> 16;
                let yin = yy >> 16;
                if (0..w).contains(&xin) && (0..h).contains(&yin) {
                    copy_pixel(
                        shape,
                        src,
                        yin as usize * width + xin as usize,
                        out,
                        y * width + x,
                    );
                }
                xx = xx.wrapping_add(a0);
                yy = yy.wrapping_add(a3);
            }
            a2 = a2.wrapping_add(a1);
            a5 = a5.wrapping_add(a4);
        }
        return;
    }
    // Floating-point path, for centres far outside the image.
    let mut xo = a[2] + a[1] * 0.5 + a[0] * 0.5;
    let mut yo = a[5] + a[4] * 0.5 + a[3] * 0.5;
    for y in 0..height {
        let (mut xx, mut yy) = (xo, yo);
        for x in 0..width {
            let (xin, yin) = (coord(xx), coord(yy));
            if (0..w).contains(&xin) && (0..h).contains(&yin) {
                copy_pixel(
                    shape,
                    src,
                    yin as usize * width + xin as usize,
                    out,
                    y * width + x,
                );
            }
            xx += a[0];
            yy += a[3];
        }
        xo += a[1];
        yo += a[4];
    }
}

/// `ImagingGenericTransform` with `affine_transform` and `bilinear_filter32RGB` (`bilinear_filter8` for one
/// channel, the same arithmetic): edge-clamped 2×2 taps, the result truncated to u8.
fn affine_bilinear(shape: InputShape, src: &[u8], a: &[f64; 6], out: &mut [u8]) {
    let (height, width, plane) = (shape.height, shape.width, shape.plane());
    let clip_x = |v: i32| v.clamp(0, width as i32 - 1) as usize;
    let clip_y = |v: i32| v.clamp(0, height as i32 - 1) as usize;
    for y in 0..height {
        let yc = y as f64 + 0.5;
        for x in 0..width {
            let xc = x as f64 + 0.5;
            let xin = a[0] * xc + a[1] * yc + a[2];
            let yin = a[3] * xc + a[4] * yc + a[5];
            if xin < 0.0 || xin >= width as f64 || yin < 0.0 || yin >= height as f64 {
                continue;
            }
            let (xin, yin) = (xin - 0.5, yin - 0.5);
            let (xf, yf) = (floor(xin), floor(yin));
            let (dx, dy) = (xin - xf as f64, yin - yf as f64);
            // PIL reuses the first row's value when the second row is below the image; clamping the second
            // row onto the first gives the same number, since v1 + (v1 - v1) * dy == v1.
            let (x0, x1) = (clip_x(xf), clip_x(xf + 1));
            let (row0, row1) = (clip_y(yf) * width, clip_y(yf + 1) * width);
            let (i00, i01, i10, i11) = (row0 + x0, row0 + x1, row1 + x0, row1 + x1);
            let o = y * width + x;
            for c in 0..shape.channels {
                let p = &src[c * plane..(c + 1) * plane];
                let lerp = |p: u8, q: u8| p as f64 + (q as i32 - p as i32) as f64 * dx;
                let v1 = lerp(p[i00], p[i01]);
                let v2 = lerp(p[i10], p[i11]);
                out[c * plane + o] = (v1 + (v2 - v1) * dy) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RGB: InputShape = InputShape::CIFAR;

    fn ramp(shape: InputShape) -> Vec<u8> {
        (0..shape.values()).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn python_round15_matches_cpython() {
        // Values from CPython 3: round(x, 15).
        for (x, expected) in [
            (0.9659258262890683, 0.965925826289068),
            (-0.25881904510252074, -0.258819045102521),
            (6.123233995736766e-17, 0.0),
            (-1e-17, -0.0),
            (1.0 / 65536.0, 1.5258789062e-05),
            (3.0 / 65536.0, 4.5776367188e-05),
            (0.5, 0.5),
        ] {
            let got = python_round15(x);
            assert_eq!(
                got.to_bits(),
                f64::to_bits(expected),
                "round({x}, 15) = {got}, CPython {expected}"
            );
        }
    }

    #[test]
    fn python_mod_takes_the_divisor_sign() {
        assert_eq!(python_mod(-90.0, 360.0), 270.0);
        assert_eq!(python_mod(450.0, 360.0), 90.0);
        assert_eq!(python_mod(-1e-20, 360.0), 360.0);
        assert_eq!(python_mod(-360.0, 360.0).to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn a_full_turn_in_quarter_turns_is_the_identity() {
        for shape in [RGB, InputShape::MNIST] {
            let src = ramp(shape);
            let (mut a, mut b) = (vec![0u8; shape.values()], vec![0u8; shape.values()]);
            rotate_with(
                shape,
                &src,
                90.0,
                Interpolation::Nearest,
                Fill::default(),
                None,
                &mut a,
            );
            for _ in 0..3 {
                rotate_with(
                    shape,
                    &a,
                    90.0,
                    Interpolation::Bilinear,
                    Fill::default(),
                    None,
                    &mut b,
                );
                std::mem::swap(&mut a, &mut b);
            }
            assert_eq!(a, src);
            hflip(shape, &src, &mut a);
            assert_ne!(a, src);
            hflip(shape, &a, &mut b);
            assert_eq!(b, src);
        }
    }

    #[test]
    fn crop_without_shift_is_the_identity_in_every_mode() {
        let src = ramp(RGB);
        let mut out = vec![0u8; RGB.values()];
        for mode in [
            PaddingMode::Constant,
            PaddingMode::Edge,
            PaddingMode::Reflect,
            PaddingMode::Symmetric,
        ] {
            crop_with(
                RGB,
                &src,
                4,
                4,
                Padding::uniform(4),
                Fill::Grey(9),
                mode,
                &mut out,
            );
            assert_eq!(out, src, "{mode:?}");
        }
    }

    #[test]
    #[should_panic(expected = "leaves the image")]
    fn crop_outside_the_padded_image_panics() {
        let mut out = vec![0u8; RGB.values()];
        crop_with(
            RGB,
            &ramp(RGB),
            9,
            0,
            Padding::uniform(4),
            Fill::default(),
            PaddingMode::Edge,
            &mut out,
        );
    }
}
