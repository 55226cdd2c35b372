//! The lab report: figures and the rendered template.

pub mod figures;
pub mod font;
