//! The shape of one input image (channels × height × width), decided by the dataset and read by the models.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Channels × height × width of one image, as the network receives it (`[N, C, H, W]` batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InputShape {
    /// Colour channels: 1 (greyscale) or 3 (RGB).
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl InputShape {
    /// CIFAR-10/100 and the embedded synthetic set: 3×32×32.
    pub const CIFAR: InputShape = InputShape::new(3, 32, 32);
    /// MNIST and Fashion-MNIST: 1×28×28.
    pub const MNIST: InputShape = InputShape::new(1, 28, 28);

    /// A shape from its three sizes.
    pub const fn new(channels: usize, height: usize, width: usize) -> Self {
        InputShape {
            channels,
            height,
            width,
        }
    }

    /// `[C, H, W]`, the form model declarations take.
    pub fn dims(&self) -> Vec<usize> {
        vec![self.channels, self.height, self.width]
    }

    /// Values in one image (C·H·W): bytes of one stored image.
    pub const fn values(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Pixels in one channel plane (H·W).
    pub const fn plane(&self) -> usize {
        self.height * self.width
    }
}

impl fmt::Display for InputShape {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}×{}×{}", self.channels, self.height, self.width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_three_dimensions() {
        let s = InputShape::MNIST;
        assert_eq!(s.dims(), vec![1, 28, 28]);
        assert_eq!(s.values(), 784);
        assert_eq!(s.plane(), 784);
        assert_eq!(InputShape::CIFAR.values(), 3072);
        assert_eq!(InputShape::new(3, 20, 30).to_string(), "3×20×30");
    }
}
