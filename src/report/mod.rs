//! The lab report: context from artifacts, observations, figures, template rendering.

pub mod classes;
pub mod context;
pub mod html;
pub mod observe;
pub mod render;
