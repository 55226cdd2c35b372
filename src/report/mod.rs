//! The lab report: figures and the rendered template.

pub mod font;
