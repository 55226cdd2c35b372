//! `--format html`: one self-contained HTML file, figures inlined as data URIs, for readers without Markdown.

use base64::Engine;
use pulldown_cmark::{Event, Options, Parser, Tag, html};
use std::path::Path;

const STYLE: &str = "body{font-family:sans-serif;max-width:980px;margin:2em auto;padding:0 1em;line-height:1.5}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.25em .6em;text-align:left}\
pre{background:#f6f6f6;padding:.8em;overflow-x:auto}img{max-width:100%}";

/// Convert Markdown to a standalone HTML page; image links are read relative to `base` and inlined.
pub fn to_html(markdown: &str, base: &Path) -> String {
    let parser = Parser::new_ext(markdown, Options::ENABLE_TABLES).map(|ev| match ev {
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => {
            let path = base.join(dest_url.as_ref());
            let inlined = std::fs::read(&path).ok().map(|bytes| {
                let mime = if dest_url.ends_with(".svg") {
                    "image/svg+xml"
                } else {
                    "image/png"
                };
                format!(
                    "data:{mime};base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                )
            });
            Event::Start(Tag::Image {
                link_type,
                dest_url: inlined.map(Into::into).unwrap_or(dest_url),
                title,
                id,
            })
        }
        other => other,
    });
    let mut body = String::new();
    html::push_html(&mut body, parser);
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>labpipe report</title><style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_inlined_and_tables_rendered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.png"), b"PNGDATA").unwrap();
        let html = to_html("| a | b |\n|---|---|\n| 1 | 2 |\n\n![fig](f.png)\n", dir.path());
        assert!(html.contains("<table>"));
        assert!(html.contains("data:image/png;base64,UE5HREFUQQ=="));
        assert!(!html.contains("src=\"f.png\""));
    }
}
