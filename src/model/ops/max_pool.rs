//! 2-D max-pooling with any kernel, stride and padding.

use candle_core::{Result, Tensor};

/// Max-pool `x` `[N, C, H, W]` with a square window; padding acts as −∞.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let x = if padding > 0 {
        x.pad_with_same(2, padding, padding)?
            .pad_with_same(3, padding, padding)?
    } else {
        x.clone()
    };
    x.max_pool2d_with_stride(kernel, stride)
}
