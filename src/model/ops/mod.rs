//! Tensor operations labpipe implements itself, each with an exact backward.

pub mod max_pool;
