//! Lays one line of text out glyph by glyph and rasterises it into a coverage mask for the PNG figures.
//!
//! plotters 0.3.7 draws bitmap text without each glyph's left side bearing, truncates every pen position to
//! a whole pixel and rounds each glyph's vertical offset on its own, so the letters of a word sit unevenly
//! ("valida tion", "h orse"). Here every glyph is placed at its exact pen position (advances and kerning, as
//! plotters measures text, so layouts computed from `estimate_text_size` still fit), keeps its bearings
//! and sub-pixel horizontal offset, and all glyphs share one baseline rounded once per line.

use ab_glyph::{Font, FontRef, OutlinedGlyph, PxScale, ScaleFont, point};
use plotters::style::text_anchor::{HPos, VPos};

/// Where the text's ink falls, relative to the anchor point, in unrotated text coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    /// Column of the mask's first pixel.
    pub left: i32,
    /// Row of the mask's first pixel.
    pub top: i32,
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Coverage per pixel, row by row, clamped to 0..=1.
    pub alpha: Vec<f32>,
}

impl Mask {
    /// Every covered pixel as (column, row, coverage), relative to the anchor point.
    pub fn pixels(&self) -> impl Iterator<Item = (i32, i32, f32)> + '_ {
        self.alpha
            .iter()
            .enumerate()
            .filter(|(_, a)| **a > 0.0)
            .map(|(k, a)| {
                let (row, col) = (k / self.width, k % self.width);
                (self.left + col as i32, self.top + row as i32, *a)
            })
    }
}

/// The pen advance of `text` at `size`: glyph advances plus kerning, the sum plotters measures text with.
#[cfg(test)]
pub fn advance_width(font: &FontRef<'_>, size: f64, text: &str) -> f32 {
    pen_positions(font, size, text).1
}

/// Each glyph's pen position from the line's start, and the total advance.
fn pen_positions(font: &FontRef<'_>, size: f64, text: &str) -> (Vec<(ab_glyph::GlyphId, f32)>, f32) {
    let scaled = font.as_scaled(PxScale::from(size as f32));
    let mut pen = 0f32;
    let mut prev = None;
    let mut glyphs = Vec::with_capacity(text.len());
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            pen += scaled.kern(p, id);
        }
        glyphs.push((id, pen));
        pen += scaled.h_advance(id);
        prev = Some(id);
    }
    (glyphs, pen)
}

/// The baseline's offset below the anchor, following the SVG backend's rule so both formats put text in the
/// same place: the cap line at a top anchor (0.76 em), the x-height centred on a centre anchor (0.5 ex) and
/// half an x-height above a bottom anchor.
fn baseline(font: &FontRef<'_>, size: f64, v: VPos) -> f32 {
    let scaled = font.as_scaled(PxScale::from(size as f32));
    let per_unit = scaled.v_scale_factor();
    let em = font.units_per_em().map_or(size as f32, |u| u * per_unit);
    // The outline's `min.y` is the glyph's top in font units (ab_glyph keeps the font's y-up values).
    let ex = font
        .outline(font.glyph_id('x'))
        .map_or(0.5 * em, |o| o.bounds.min.y * per_unit);
    let offset = match v {
        VPos::Top => 0.76 * em,
        VPos::Center => 0.5 * ex,
        VPos::Bottom => -0.5 * ex,
    };
    // A whole-pixel baseline keeps the horizontal strokes (baseline, x-height) crisp.
    offset.round()
}

/// Rasterise `text` in `font` at `size` (plotters' size: the font's ascent-to-descent height in pixels)
/// anchored at the origin as `h` and `v` say.
pub fn rasterize(font: &FontRef<'_>, size: f64, text: &str, h: HPos, v: VPos) -> Mask {
    let (pens, width) = pen_positions(font, size, text);
    let start = match h {
        HPos::Left => 0.0,
        HPos::Center => -width / 2.0,
        HPos::Right => -width,
    };
    let base = baseline(font, size, v);
    let scale = PxScale::from(size as f32);
    let outlined: Vec<OutlinedGlyph> = pens
        .into_iter()
        .filter_map(|(id, pen)| {
            font.outline_glyph(id.with_scale_and_position(scale, point(start + pen, base)))
        })
        .collect();
    let Some(first) = outlined.first() else {
        return Mask {
            left: 0,
            top: 0,
            width: 0,
            height: 0,
            alpha: Vec::new(),
        };
    };
    let mut bounds = first.px_bounds();
    for g in &outlined[1..] {
        let b = g.px_bounds();
        bounds.min.x = bounds.min.x.min(b.min.x);
        bounds.min.y = bounds.min.y.min(b.min.y);
        bounds.max.x = bounds.max.x.max(b.max.x);
        bounds.max.y = bounds.max.y.max(b.max.y);
    }
    // px_bounds are whole pixels, so these casts are exact.
    let (left, top) = (bounds.min.x as i32, bounds.min.y as i32);
    let (width, height) = (bounds.width() as usize, bounds.height() as usize);
    let mut alpha = vec![0f32; width * height];
    for g in &outlined {
        let b = g.px_bounds();
        let (dx, dy) = ((b.min.x as i32 - left) as usize, (b.min.y as i32 - top) as usize);
        // Neighbouring glyphs can share a pixel; their coverages add, as one outline's would.
        g.draw(|x, y, c| alpha[(dy + y as usize) * width + dx + x as usize] += c);
    }
    for a in &mut alpha {
        *a = a.clamp(0.0, 1.0);
    }
    Mask {
        left,
        top,
        width,
        height,
        alpha,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figure::font;

    fn face() -> &'static FontRef<'static> {
        font::face().expect("embedded font parses")
    }

    /// Coverage-weighted mean column and total coverage of the mask's pixels with column in `cols`.
    fn centroid(m: &Mask, cols: std::ops::Range<i32>) -> (f64, f64) {
        let (mut sum, mut mass) = (0.0, 0.0);
        for (x, _, a) in m.pixels().filter(|(x, _, _)| cols.contains(x)) {
            sum += (f64::from(x) + 0.5) * f64::from(a);
            mass += f64::from(a);
        }
        (sum / mass, mass)
    }

    #[test]
    fn a_glyph_keeps_its_left_side_bearing() {
        // An "o" is symmetric: its ink centre lies at its bearing plus half its ink width, not at half its
        // ink width from the pen (the plotters bug, off by the bearing, about 0.7 px here).
        for size in [11.0, 13.0, 17.0] {
            let m = rasterize(face(), size, "o", HPos::Left, VPos::Center);
            let scaled = face().as_scaled(PxScale::from(size as f32));
            let o = face().outline(face().glyph_id('o')).unwrap();
            let expected = f64::from((o.bounds.min.x + o.bounds.max.x) / 2.0 * scaled.h_scale_factor());
            let (got, _) = centroid(&m, i32::MIN..i32::MAX);
            assert!(
                (got - expected).abs() < 0.08,
                "size {size}: ink centre {got}, expected {expected}"
            );
        }
    }

    #[test]
    fn equal_glyphs_are_spaced_by_their_exact_advance() {
        // Whole-pixel pen positions would make this distance err by the advance's fraction (up to 1 px).
        for size in [10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 17.5] {
            let m = rasterize(face(), size, "o  o", HPos::Left, VPos::Center);
            let mid = (advance_width(face(), size, "o ") as f64).round() as i32;
            let (a, mass_a) = centroid(&m, i32::MIN..mid);
            let (b, mass_b) = centroid(&m, mid..i32::MAX);
            // The second o's pen position.
            let expected = f64::from(advance_width(face(), size, "o  "));
            assert!(
                (mass_a - mass_b).abs() / mass_a < 0.05,
                "size {size}: the halves split an o"
            );
            assert!(
                ((b - a) - expected).abs() < 0.08,
                "size {size}: o's {} px apart, expected {expected}",
                b - a
            );
        }
    }

    #[test]
    fn every_glyph_sits_on_one_baseline() {
        // Flat-bottomed glyphs end on the same row; per-glyph rounding put some one pixel off.
        for size in 9..=24 {
            let size = f64::from(size);
            let bottoms: Vec<i32> = ["H", "x", "n", "z", "E", "1"]
                .iter()
                .map(|g| {
                    // The last row holding at least half a pixel of ink (thin stems spread over two columns).
                    let m = rasterize(face(), size, g, HPos::Left, VPos::Center);
                    let ink = |row: i32| m.pixels().filter(|p| p.1 == row).map(|p| p.2).sum::<f32>();
                    (m.top..m.top + m.height as i32)
                        .rev()
                        .find(|&r| ink(r) >= 0.5)
                        .unwrap()
                })
                .collect();
            assert!(
                bottoms.iter().all(|&b| b == bottoms[0]),
                "size {size}: bottoms {bottoms:?}"
            );
            // The centre anchor puts the baseline half an x-height below the anchor.
            assert!(
                (1..=(size as i32 / 3)).contains(&(bottoms[0] + 1)),
                "size {size}: {bottoms:?}"
            );
        }
    }

    #[test]
    fn anchors_place_the_text_around_the_point() {
        let size = 13.0;
        let w = advance_width(face(), size, "accuracy");
        let left = rasterize(face(), size, "accuracy", HPos::Left, VPos::Top);
        let right = rasterize(face(), size, "accuracy", HPos::Right, VPos::Top);
        let centre = rasterize(face(), size, "accuracy", HPos::Center, VPos::Bottom);
        assert!(left.left >= 0 && left.left + left.width as i32 <= w.ceil() as i32 + 1);
        assert!(right.left + right.width as i32 <= 1 && right.left >= -(w.ceil() as i32) - 1);
        assert!((centre.left + centre.width as i32 / 2).abs() <= 1);
        // Top: the ink hangs below the point; bottom: it stands above it (descender aside).
        assert!(left.top >= -1 && centre.top + centre.height as i32 <= 4);
    }

    #[test]
    fn empty_and_blank_text_have_no_ink() {
        for text in ["", " ", "   "] {
            let m = rasterize(face(), 13.0, text, HPos::Center, VPos::Center);
            assert_eq!(m.pixels().count(), 0, "{text:?}");
        }
    }

    #[test]
    fn rasterising_is_deterministic() {
        let a = rasterize(
            face(),
            13.0,
            "validation · 93.2% → 512×10",
            HPos::Center,
            VPos::Center,
        );
        let b = rasterize(
            face(),
            13.0,
            "validation · 93.2% → 512×10",
            HPos::Center,
            VPos::Center,
        );
        assert_eq!(a, b);
        assert!(a.pixels().count() > 100);
    }
}
