//! Pillow's image resampling for 8-bit images, so that `image_size` gives the bytes torchvision's `Resize`
//! gives on a PIL image: a bilinear (triangle) filter widened by the scale factor when shrinking (PIL's
//! antialiasing), coefficients in 22-bit fixed point, the horizontal pass first and rounded to bytes, then
//! the vertical pass (Pillow's `libImaging/Resample.c`).

/// Fixed-point bits of the coefficients (Pillow's `PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// For each output position: the first input index, and the integer weights of the inputs from there.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    weights: Vec<Vec<i32>>,
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// Pillow's `precompute_coeffs` with the bilinear filter, then `normalize_coeffs_8bpc`.
fn coeffs(in_size: usize, out_size: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's `(int)` truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut k: Vec<f64> = (0..n)
            .map(|x| triangle((x as f64 + xmin as f64 - center + 0.5) * ss))
            .collect();
        let ww: f64 = k.iter().sum();
        if ww != 0.0 {
            for w in &mut k {
                *w /= ww;
            }
        }
        let fixed = k
            .iter()
            .map(|&w| {
                let v = w * f64::from(1u32 << PRECISION_BITS);
                if w < 0.0 {
                    (-0.5 + v) as i32
                } else {
                    (0.5 + v) as i32
                }
            })
            .collect();
        bounds.push((xmin, n));
        weights.push(fixed);
    }
    Coeffs { bounds, weights }
}

/// Pillow's `clip8`: the fixed-point sum back to a byte.
fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes one 8-bit plane of `h`×`w` to `out_h`×`out_w` as Pillow's `Image.resize(…, BILINEAR)` does.
pub fn resize_plane(plane: &[u8], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<u8> {
    let mut cur = plane.to_vec();
    let mut cur_w = w;
    if out_w != w {
        let c = coeffs(w, out_w);
        let mut next = vec![0u8; h * out_w];
        for y in 0..h {
            let row = &cur[y * w..(y + 1) * w];
            for (x, ((start, n), k)) in c.bounds.iter().zip(&c.weights).enumerate() {
                let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                for i in 0..*n {
                    ss += i64::from(row[start + i]) * i64::from(k[i]);
                }
                next[y * out_w + x] = clip8(ss);
            }
        }
        cur = next;
        cur_w = out_w;
    }
    if out_h != h {
        let c = coeffs(h, out_h);
        let mut next = vec![0u8; out_h * cur_w];
        for (y, ((start, n), k)) in c.bounds.iter().zip(&c.weights).enumerate() {
            for x in 0..cur_w {
                let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                for i in 0..*n {
                    ss += i64::from(cur[(start + i) * cur_w + x]) * i64::from(k[i]);
                }
                next[y * cur_w + x] = clip8(ss);
            }
        }
        cur = next;
    }
    cur
}

/// PIL's `convert("L")` of one RGB pixel: ITU-R 601-2 luma in Pillow's 16-bit fixed point.
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_a_copy_and_constant_planes_stay_constant() {
        let plane: Vec<u8> = (0..12).collect();
        assert_eq!(resize_plane(&plane, 3, 4, 3, 4), plane);
        let flat = vec![77u8; 40 * 30];
        assert!(resize_plane(&flat, 40, 30, 7, 11).iter().all(|&v| v == 77));
        assert!(resize_plane(&flat, 40, 30, 90, 61).iter().all(|&v| v == 77));
    }

    #[test]
    fn halving_averages_pairs_like_pillow() {
        // Pillow 13: Image.frombytes("L", (4, 1), bytes([0, 100, 200, 50])).resize((2, 1), BILINEAR) gives
        // [71, 121]: the support widens to two input pixels, clipped at the edge (weights 3/7, 3/7, 1/7).
        assert_eq!(resize_plane(&[0, 100, 200, 50], 1, 4, 1, 2), vec![71, 121]);
    }

    #[test]
    fn luma_is_pillows() {
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(255, 0, 0), 76);
        // 150, where the rounded-down 601-2 formula (G * 587 / 1000) would give 149.
        assert_eq!(luma(0, 255, 0), 150);
        assert_eq!(luma(0, 0, 255), 29);
    }
}
