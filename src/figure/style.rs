//! Colours, fonts and axis arithmetic shared by the figures (matplotlib's look: tab10 colours, light grid).

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::figure::font;

/// matplotlib's "tab10" cycle, so runs get the colours readers know from matplotlib figures.
pub const TAB10: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// Text and axes.
pub const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
/// Secondary text (subtitles, notes).
pub const MUTED: RGBColor = RGBColor(0x66, 0x66, 0x66);
/// Grid lines.
pub const GRID: RGBColor = RGBColor(0xe3, 0xe3, 0xe3);
/// Legend frame.
pub const FRAME: RGBColor = RGBColor(0xcc, 0xcc, 0xcc);

/// A text style in the embedded font.
pub fn text(size: f64, bold: bool, color: &RGBColor) -> TextStyle<'static> {
    font::ensure_registered();
    let style = if bold { FontStyle::Bold } else { FontStyle::Normal };
    FontDesc::new(FontFamily::Name(font::FAMILY), size, style).color(color)
}

/// Turn a plotters error into the message `FigureError::Draw` carries.
pub fn msg<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// The axis range for finite values `lo..=hi`: widened to at least `min_span` around its middle (so a
/// single epoch or a flat curve does not fill the axis with ticks in the fourth decimal), 5 % margins as
/// matplotlib adds, and never past `bounds` when the data lie inside them (accuracy stays within 0..1).
pub fn padded_range(lo: f64, hi: f64, bounds: (f64, f64), min_span: f64) -> (f64, f64) {
    let min_span = min_span.max(f64::EPSILON * hi.abs().max(lo.abs()).max(1.0) * 16.0);
    let (lo_w, hi_w) = if hi - lo < min_span {
        let mid = lo / 2.0 + hi / 2.0;
        (mid - min_span / 2.0, mid + min_span / 2.0)
    } else {
        (lo, hi)
    };
    let span = hi_w - lo_w;
    let (mut a, mut b) = (lo_w - 0.05 * span, hi_w + 0.05 * span);
    // Near f64::MAX the margin overflows; the data's own extent is still a valid range.
    if !(a.is_finite() && b.is_finite() && a < b) {
        (a, b) = (lo_w, hi_w);
    }
    if lo >= bounds.0 {
        a = a.max(bounds.0);
    }
    if hi <= bounds.1 {
        b = b.min(bounds.1);
    }
    (a, b)
}

/// Tick positions at a "nice" step (1, 2 or 5 × 10ⁿ) inside `lo..=hi`, at most `max_count` of them, and the
/// step (which decides how many decimals the labels need).
pub fn nice_ticks(lo: f64, hi: f64, max_count: usize) -> (Vec<f64>, f64) {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) || max_count == 0 {
        return (vec![lo], 1.0);
    }
    let raw = span / max_count.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| span / s <= max_count as f64)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    // Computing each tick from its index (not by repeated addition) keeps labels like 0.3 exact.
    let ticks = (first..=last).map(|i| i as f64 * step).collect();
    (ticks, step)
}

/// Decimals needed to tell ticks `step` apart.
pub fn decimals_for(step: f64) -> usize {
    if step >= 1.0 || step <= 0.0 || !step.is_finite() {
        0
    } else {
        (-step.log10().floor()) as usize
    }
}

/// Integer epoch ticks at a step of 1, 2, 5, 10, 20, 50, ... so at most `max_count` are shown.
pub fn epoch_ticks(first: usize, last: usize, max_count: usize) -> Vec<f64> {
    let span = last.saturating_sub(first);
    let step = (0u32..)
        .map(|k| [1usize, 2, 5][(k % 3) as usize].saturating_mul(10usize.saturating_pow(k / 3)))
        .find(|&s| span / s < max_count.max(1) || s == usize::MAX)
        .unwrap_or(1);
    let start = first.div_ceil(step) * step;
    (start..=last).step_by(step).map(|e| e as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice_and_inside() {
        let (t, step) = nice_ticks(0.0, 1.0, 6);
        assert_eq!(step, 0.2);
        assert_eq!(t, vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        let (t, step) = nice_ticks(0.853, 0.861, 6);
        assert!((step - 0.002).abs() < 1e-12, "{step}");
        assert!(t.iter().all(|v| (0.853..=0.861).contains(v)));
        assert_eq!(decimals_for(step), 3);
        assert_eq!(nice_ticks(2.0, 2.0, 5).0, vec![2.0]);
    }

    #[test]
    fn ranges_pad_and_respect_bounds() {
        assert_eq!(padded_range(0.2, 1.0, (0.0, 1.0), 0.05), (0.16, 1.0));
        let (a, b) = padded_range(0.5, 0.5, (0.0, 1.0), 0.05);
        assert!(a < 0.475 && b > 0.525, "{a} {b}");
        let (a, b) = padded_range(0.99, 1.0, (0.0, 1.0), 0.05);
        assert!(a < 0.97 && b == 1.0, "{a} {b}");
        // Even with no minimum a constant gets a non-empty range.
        let (a, b) = padded_range(3.0, 3.0, (0.0, f64::INFINITY), 0.0);
        assert!(a < 3.0 && b > 3.0);
        // Values outside the bounds are still shown.
        let (a, _) = padded_range(-1.0, 1.0, (0.0, f64::INFINITY), 0.0);
        assert!(a < -1.0);
        // Huge losses do not overflow.
        let (a, b) = padded_range(1.0, 1e300, (0.0, f64::INFINITY), 0.0);
        assert!(a == 0.0 && b.is_finite());
        let (a, b) = padded_range(-f64::MAX, f64::MAX, (0.0, f64::INFINITY), 0.0);
        assert!(a.is_finite() && b.is_finite() && a < b);
    }

    #[test]
    fn epoch_ticks_stay_few_and_integer() {
        assert_eq!(epoch_ticks(1, 1, 10), vec![1.0]);
        assert_eq!(epoch_ticks(1, 5, 10), vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        let t = epoch_ticks(1, 80, 10);
        assert_eq!(t, vec![10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0]);
        let t = epoch_ticks(1, 300, 10);
        assert!(t.len() <= 10 && t.len() >= 3, "{t:?}");
    }
}
