//! Models: the layer declaration, the built-ins, and the Candle network built from a declaration.

pub mod builtins;
pub mod decl;
pub mod ops;
