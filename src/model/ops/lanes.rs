//! f32 reductions written over 16 independent lanes so LLVM vectorizes them (a plain `iter().sum()`
//! is one serial chain of dependent adds, 4–8× slower).

const LANES: usize = 16;

/// Σ f(i) over the elements of `x` (with `f` seeing each element), reduced lane-wise.
#[inline(always)]
pub(crate) fn sum_map(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += f(c[l]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Σ x.
pub(crate) fn sum(x: &[f32]) -> f32 {
    sum_map(x, |v| v)
}

/// (Σ f(a, b, c).0, Σ f(a, b, c).1) over elements taken together from three equal-length slices.
#[inline(always)]
pub(crate) fn sum2_zip3(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    f: impl Fn(f32, f32, f32) -> (f32, f32),
) -> (f32, f32) {
    assert!(
        a.len() == b.len() && b.len() == c.len(),
        "sum2_zip3: lengths differ"
    );
    let (mut s0, mut s1) = ([0f32; LANES], [0f32; LANES]);
    let (ca, cb, cc) = (
        a.chunks_exact(LANES),
        b.chunks_exact(LANES),
        c.chunks_exact(LANES),
    );
    let (mut t0, mut t1) = (0f32, 0f32);
    for ((&x, &y), &z) in ca.remainder().iter().zip(cb.remainder()).zip(cc.remainder()) {
        let (p, q) = f(x, y, z);
        t0 += p;
        t1 += q;
    }
    for ((x, y), z) in ca.zip(cb).zip(cc) {
        for l in 0..LANES {
            let (p, q) = f(x[l], y[l], z[l]);
            s0[l] += p;
            s1[l] += q;
        }
    }
    (s0.iter().sum::<f32>() + t0, s1.iter().sum::<f32>() + t1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_sums_equal_plain_sums() {
        let x: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let y: Vec<f32> = (0..37).map(|i| 1.0 - i as f32).collect();
        assert_eq!(sum(&x), x.iter().sum::<f32>());
        assert_eq!(sum_map(&x, |v| v * v), x.iter().map(|v| v * v).sum::<f32>());
        let (a, b) = sum2_zip3(&x, &y, &x, |p, q, _| (p * q, p + q));
        assert_eq!(a, x.iter().zip(&y).map(|(p, q)| p * q).sum::<f32>());
        assert_eq!(b, x.iter().zip(&y).map(|(p, q)| p + q).sum::<f32>());
    }
}
