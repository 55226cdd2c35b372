//! Drawing, shared by the plot stage, the model summary (diagram) and the report: loss/accuracy curves of one
//! run, validation curves of several runs overlaid, the test confusion matrix, and the embedded font.
//!
//! Every figure is painted once per backend from the same inputs with the embedded font, so the SVG and the
//! PNG show the same picture and the same input always gives the same bytes. `write_svg_and_png` is the one
//! place that renders a `Painting` to both formats and moves the files into place atomically; other figures
//! (the model diagram) implement `Painting` and reuse it. Its PNG text is set by `typeset` (through
//! `bitmap::TypesetBitMap`), because plotters' own bitmap text spaces letters unevenly.
//!
//! To look at the figures the tests draw, run them with `FIGURES_PREVIEW_DIR=/some/dir`: the curve, overlay,
//! confusion and model-diagram tests then also write their figures there.

mod bitmap;
mod confusion;
mod curves;
pub mod font;
mod legend;
mod panel;
mod style;
mod typeset;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use plotters::coord::Shift;
use plotters::prelude::*;

use self::bitmap::TypesetBitMap;
pub use self::confusion::draw_confusion;
pub use self::curves::{CurveMarks, draw_curves, draw_overlay};

/// Why a figure could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    /// plotters failed while painting.
    #[error("drawing {path}: {message}")]
    Draw {
        /// File being drawn.
        path: PathBuf,
        /// The backend's message.
        message: String,
    },
    /// Creating, writing or renaming the file failed.
    #[error("writing {path}: {source}; check that the directory exists and is writable")]
    Io {
        /// File being written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A picture that can be painted identically on any plotters backend.
pub trait Painting {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    /// Paint onto `area` (the whole canvas); errors are the backend's message.
    fn paint<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// Render `painting` as SVG and PNG and move both into place only once both were rendered.
pub fn write_svg_and_png(painting: &impl Painting, svg: &Path, png: &Path) -> Result<(), FigureError> {
    let size = painting.size();
    let mut text = String::new();
    {
        let area = SVGBackend::with_string(&mut text, size).into_drawing_area();
        painting
            .paint(&area)
            .and_then(|()| area.present().map_err(|e| e.to_string()))
            .map_err(|message| FigureError::Draw {
                path: svg.to_path_buf(),
                message,
            })?;
    }
    ensure_parent(svg)?;
    ensure_parent(png)?;
    // plotters encodes the PNG (through the `image` crate) only when it saves to a path, so the PNG goes to
    // a temporary sibling first; the `image` PNG encoder writes no timestamp, so the bytes are reproducible.
    // Text goes through `TypesetBitMap`: plotters' own bitmap text spaces letters unevenly.
    let png_tmp = temp_beside(png);
    let drawn = {
        let area = TypesetBitMap::new(BitMapBackend::new(&png_tmp, size)).into_drawing_area();
        painting
            .paint(&area)
            .and_then(|()| area.present().map_err(|e| e.to_string()))
    };
    if let Err(message) = drawn {
        let _ = std::fs::remove_file(&png_tmp);
        return Err(FigureError::Draw {
            path: png.to_path_buf(),
            message,
        });
    }
    let svg_tmp = temp_beside(svg);
    let written = std::fs::write(&svg_tmp, text.as_bytes())
        .map_err(io_err(svg))
        .and_then(|()| std::fs::rename(&png_tmp, png).map_err(io_err(png)))
        .and_then(|()| std::fs::rename(&svg_tmp, svg).map_err(io_err(svg)));
    if written.is_err() {
        let _ = std::fs::remove_file(&png_tmp);
        let _ = std::fs::remove_file(&svg_tmp);
    }
    written
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FigureError + '_ {
    move |source| FigureError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A sibling temporary path, unique within this process, that keeps the extension (plotters picks the image
/// format from it).
fn temp_beside(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or("figure".into(), |n| n.to_string_lossy().into_owned());
    let ext = path
        .extension()
        .map_or(String::new(), |e| format!(".{}", e.to_string_lossy()));
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.tmp-{}-{n}{ext}", std::process::id()))
}

fn ensure_parent(path: &Path) -> Result<(), FigureError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir).map_err(io_err(path)),
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Shared checks for the figure tests.

    use std::path::{Path, PathBuf};

    /// Width, height and RGB(A) pixels of a PNG file's bytes.
    pub fn decode(png: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().expect("PNG header decodes");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("PNG pixels decode");
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    /// The SVG and PNG paths for `stem` in `dir`.
    pub fn paths(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        (dir.join(format!("{stem}.svg")), dir.join(format!("{stem}.png")))
    }

    /// Read both files, check they are a real SVG and a decodable PNG of `size`, and return their bytes.
    pub fn read_checked(svg: &Path, png: &Path, size: (u32, u32)) -> (String, Vec<u8>) {
        let text = std::fs::read_to_string(svg).expect("SVG is written");
        assert!(
            text.starts_with("<svg") && text.trim_end().ends_with("</svg>"),
            "not an SVG"
        );
        let bytes = std::fs::read(png).expect("PNG is written");
        let (w, h, pixels) = decode(&bytes);
        assert_eq!((w, h), size);
        assert!(pixels.iter().any(|&p| p < 64), "the PNG has dark ink");
        (text, bytes)
    }

    /// How many `<text>` elements of `svg` read exactly `label` (plotters writes the text on its own line).
    pub fn text_count(svg: &str, label: &str) -> usize {
        let escaped = label
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        svg.matches(&format!(">\n{escaped}\n</text>")).count()
    }

    /// Whether `svg` has a `<text>` element reading exactly `label`.
    pub fn has_text(svg: &str, label: &str) -> bool {
        text_count(svg, label) > 0
    }

    /// The names in `dir`, sorted (to see that no temporary file was left behind).
    pub fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}
