//! The scalars of one update: computed in f64 as PyTorch computes them in Python, and rounded to f32 as
//! PyTorch rounds Python scalars for an f32 tensor op. Shared by the tensor-op, fused CPU and CUDA paths.

/// The scalars of one Adam update of one parameter, computed in f64 as PyTorch does in Python.
#[derive(Debug, Clone, Copy)]
pub(super) struct AdamScalars {
    /// AdamW: the parameter is first multiplied by `1 - lr * weight_decay`.
    pub(super) decay: Option<f64>,
    /// Adam: `weight_decay * param` is added to the gradient.
    pub(super) l2: Option<f64>,
    /// `1 - beta1`, the weight of `exp_avg.lerp_(grad, 1 - beta1)`.
    pub(super) w1: f64,
    pub(super) beta2: f64,
    /// `1 - beta2`.
    pub(super) w2: f64,
    /// `sqrt(1 - beta2^step)`.
    pub(super) bc2_sqrt: f64,
    pub(super) eps: f64,
    /// `-lr / (1 - beta1^step)`.
    pub(super) neg_step_size: f64,
}

/// The scalars of one SGD update, rounded to f32 for the fused pass.
#[derive(Debug, Clone, Copy)]
pub(super) struct SgdScalars {
    pub(super) weight_decay: Option<f64>,
    pub(super) momentum: Option<f64>,
    /// `1 - dampening`.
    pub(super) keep: f64,
    pub(super) nesterov: bool,
    pub(super) neg_lr: f64,
}

/// [`AdamScalars`] rounded to f32 as PyTorch rounds Python scalars for an f32 tensor op.
pub(super) struct AdamF32 {
    pub(super) decay: Option<f32>,
    pub(super) l2: Option<f32>,
    pub(super) w1: f32,
    pub(super) beta2: f32,
    pub(super) w2: f32,
    pub(super) bc2_sqrt: f32,
    pub(super) eps: f32,
    pub(super) neg_step_size: f32,
}

impl From<&AdamScalars> for AdamF32 {
    fn from(s: &AdamScalars) -> Self {
        AdamF32 {
            decay: s.decay.map(|x| x as f32),
            l2: s.l2.map(|x| x as f32),
            w1: s.w1 as f32,
            beta2: s.beta2 as f32,
            w2: s.w2 as f32,
            bc2_sqrt: s.bc2_sqrt as f32,
            eps: s.eps as f32,
            neg_step_size: s.neg_step_size as f32,
        }
    }
}

/// [`SgdScalars`] rounded to f32 as PyTorch rounds Python scalars for an f32 tensor op.
pub(super) struct SgdF32 {
    pub(super) weight_decay: f32,
    pub(super) momentum: f32,
    pub(super) keep: f32,
    pub(super) neg_lr: f32,
}
