//! What the training-mode batch-norm op and its CUDA kernel share: the epilogue choice and the (N, C, L) view
//! of an activation. Kept apart so that the op and its kernel do not import each other.

/// What follows the normalization inside the op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Epilogue {
    None,
    Relu,
    /// Add a residual tensor, then ReLU.
    AddRelu,
}

/// Lay out `[N, C, L]`: (n, c, l) from the tensor's dims.
pub(crate) fn ncl(dims: &[usize]) -> (usize, usize, usize) {
    let (n, c) = (dims[0], dims[1]);
    (n, c, dims[2..].iter().product())
}
