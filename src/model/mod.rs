//! Models: the layer declaration, the built-ins, the Candle network built from a declaration, checkpoints.

pub mod builtins;
pub mod checkpoint;
pub mod composed;
pub mod decl;
pub mod net;
pub mod ops;
