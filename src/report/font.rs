//! The font every figure uses, embedded in the binary so no system fonts or fontconfig are needed.

use std::sync::Once;

/// DejaVu Sans (see assets/fonts/LICENSE-DejaVu.txt).
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Family name to use in plotters text styles.
pub const FAMILY: &str = "sans-serif";

/// Register the embedded font with plotters (idempotent; call before drawing text).
pub fn ensure_registered() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [
            plotters::style::FontStyle::Normal,
            plotters::style::FontStyle::Bold,
            plotters::style::FontStyle::Italic,
            plotters::style::FontStyle::Oblique,
        ] {
            // The font is compiled in and known valid; a failure here would be a build defect.
            if plotters::style::register_font(FAMILY, style, DEJAVU_SANS).is_err() {
                panic!("embedded DejaVu Sans font failed to load");
            }
        }
    });
}
