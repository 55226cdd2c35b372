//! The font every figure uses, embedded in the binary so no system fonts or fontconfig are needed.

use std::sync::{LazyLock, Once};

use ab_glyph::FontRef;

/// DejaVu Sans (see assets/fonts/LICENSE-DejaVu.txt).
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Family name to use in plotters text styles.
pub const FAMILY: &str = "sans-serif";

/// The embedded font parsed for direct glyph drawing (the PNG text of the figures); `None` only if the
/// compiled-in bytes were not a font, which the tests rule out.
pub fn face() -> Option<&'static FontRef<'static>> {
    static FACE: LazyLock<Option<FontRef<'static>>> =
        LazyLock::new(|| FontRef::try_from_slice(DEJAVU_SANS).ok());
    FACE.as_ref()
}

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

#[cfg(test)]
mod tests {
    use ab_glyph::Font;

    #[test]
    fn embedded_font_parses_and_has_latin_glyphs() {
        let face = super::face().expect("the embedded font parses");
        for c in ['a', 'x', 'H', '%', '×', '→'] {
            assert_ne!(face.glyph_id(c).0, 0, "no glyph for {c:?}");
        }
    }
}
