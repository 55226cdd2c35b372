//! The PNG backend of the figures: plotters' `BitMapBackend` with text drawn by `typeset`, so letters are
//! spaced as the font says (plotters' own bitmap text drops side bearings and rounds per glyph).
//!
//! Everything except text goes straight to the wrapped backend, so lines, fills and the encoded file are
//! exactly what `BitMapBackend` makes; text measuring (`estimate_text_size`) is plotters' too, the same
//! the SVG backend uses, so both formats lay a figure out alike.

use plotters::prelude::*;
use plotters::style::FontTransform;
use plotters_backend::{BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind};

use super::typeset;
use crate::figure::font;

/// `BitMapBackend` drawing text in the embedded font with correct glyph placement.
pub struct TypesetBitMap<'a> {
    inner: BitMapBackend<'a>,
}

impl<'a> TypesetBitMap<'a> {
    /// Wrap `inner`; all drawing but text is delegated to it.
    pub fn new(inner: BitMapBackend<'a>) -> Self {
        Self { inner }
    }
}

/// Where the pixel at (`col`, `row`) of unrotated text lands, relative to the anchor, after `transform`
/// turns the text about the anchor. Pixels are mapped as squares (by their centres), so a turned glyph
/// covers exactly the pixels the upright one did, turned.
fn turn(transform: &FontTransform, col: i32, row: i32) -> (i32, i32) {
    match transform {
        FontTransform::None => (col, row),
        FontTransform::Rotate90 => (-row - 1, col),
        FontTransform::Rotate180 => (-col - 1, -row - 1),
        FontTransform::Rotate270 => (row, -col - 1),
    }
}

impl<'a> DrawingBackend for TypesetBitMap<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.blit_bitmap(pos, size, src)
    }

    fn draw_text<TStyle: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &TStyle,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        // Only the embedded family is typeset here; any other goes to plotters as before.
        let face = match font::face() {
            Some(face) if style.family().as_str() == font::FAMILY => face,
            _ => return self.inner.draw_text(text, style, pos),
        };
        let anchor = style.anchor();
        let mask = typeset::rasterize(face, style.size(), text, anchor.h_pos, anchor.v_pos);
        let transform = style.transform();
        for (col, row, coverage) in mask.pixels() {
            let (dx, dy) = turn(&transform, col, row);
            let ink = BackendColor {
                alpha: color.alpha * f64::from(coverage),
                rgb: color.rgb,
            };
            // The wrapped backend skips pixels outside the canvas.
            self.inner.draw_pixel((pos.0 + dx, pos.1 + dy), ink)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    const SIZE: (u32, u32) = (120, 120);

    fn render(text: &str, transform: FontTransform, at: (i32, i32)) -> Vec<u8> {
        let mut buf = vec![255u8; (SIZE.0 * SIZE.1 * 3) as usize];
        {
            let backend = TypesetBitMap::new(BitMapBackend::with_buffer(&mut buf, SIZE));
            let area = backend.into_drawing_area();
            let style = crate::figure::style::text(15.0, false, &BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center))
                .transform(transform);
            area.draw_text(text, &style, at).unwrap();
            area.present().unwrap();
        }
        buf
    }

    fn px(buf: &[u8], x: i32, y: i32) -> &[u8] {
        let k = ((y as u32 * SIZE.0 + x as u32) * 3) as usize;
        &buf[k..k + 3]
    }

    #[test]
    fn turned_text_is_the_upright_text_turned_about_the_anchor() {
        let at = (60, 60);
        let upright = render("Ab1", FontTransform::None, at);
        assert!(upright.iter().any(|&p| p < 64), "text was drawn");
        for (transform, map) in [
            (
                FontTransform::Rotate90,
                (|c, r| (-r - 1, c)) as fn(i32, i32) -> (i32, i32),
            ),
            (FontTransform::Rotate180, |c, r| (-c - 1, -r - 1)),
            (FontTransform::Rotate270, |c, r| (r, -c - 1)),
        ] {
            let turned = render("Ab1", transform, at);
            for r in -30..30 {
                for c in -30..30 {
                    let (tc, tr) = map(c, r);
                    assert_eq!(
                        px(&upright, at.0 + c, at.1 + r),
                        px(&turned, at.0 + tc, at.1 + tr),
                        "pixel ({c}, {r})"
                    );
                }
            }
        }
    }

    #[test]
    fn text_partly_off_the_canvas_is_clipped_not_an_error() {
        let buf = render("a long label that runs off the edge", FontTransform::None, (5, 2));
        assert!(buf.iter().any(|&p| p < 64));
    }

    #[test]
    fn measuring_matches_plotters_so_layouts_agree_with_the_svg() {
        let mut buf = vec![255u8; (SIZE.0 * SIZE.1 * 3) as usize];
        let backend = TypesetBitMap::new(BitMapBackend::with_buffer(&mut buf, SIZE));
        let style = crate::figure::style::text(13.0, false, &BLACK);
        let mut svg = String::new();
        let svg_backend = SVGBackend::with_string(&mut svg, SIZE);
        for text in ["validation", "selected checkpoint, epoch 37", "automobile"] {
            assert_eq!(
                backend.estimate_text_size(text, &style).unwrap(),
                svg_backend.estimate_text_size(text, &style).unwrap()
            );
            let drawn = typeset::advance_width(font::face().unwrap(), 13.0, text);
            let (measured, _) = backend.estimate_text_size(text, &style).unwrap();
            assert!(
                (drawn - measured as f32).abs() < 1.0,
                "{text}: {drawn} vs {measured}"
            );
        }
    }
}
