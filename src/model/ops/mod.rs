//! Tensor operations labpipe implements itself, each with an exact backward.

pub mod adaptive_avg_pool;
pub mod batch_norm;
#[cfg(feature = "cuda")]
mod batch_norm_cuda;
pub mod batch_norm_eval;
mod bn_parts;
pub mod bn_relu_pool;
pub mod conv;
mod cpu_data;
mod lanes;
pub mod max_pool;
#[cfg(feature = "cuda")]
mod max_pool_cuda;
pub mod running_stats;

pub use adaptive_avg_pool::adaptive_avg_pool2d;
pub use batch_norm::{batch_norm_add_relu_train, batch_norm_relu_train, batch_norm_train};
pub use batch_norm_eval::{EvalEpilogue, batch_norm_eval};
pub use bn_relu_pool::batch_norm_relu_max_pool_train;
pub use conv::conv2d;
pub use cpu_data::{Composition, composition, set_composition};
pub use max_pool::max_pool2d;
pub use running_stats::{RunningUpdate, update_running_stats};
