//! Charts for `poet plot` and `poet words`, and sparklines for `poet runs show`.
//!
//! Everything is drawn as hand-written SVG (no plotting framework, no libtorch, nothing
//! fetched at run time); a PNG is that same SVG rasterised by `resvg` with DejaVu Sans
//! embedded in the binary, so the two formats always agree and text in a PNG never
//! depends on the fonts of the machine that renders it.
//!
//! Layout: `curves` draws loss curves, `words` the word-frequency bars, `spark` the
//! terminal sparkline; `axis` computes scales and tick values, `svg` writes elements and
//! measures text, `raster` turns SVG into PNG.

mod axis;
mod curves;
mod raster;
mod spark;
mod svg;
mod words;

use std::path::{Path, PathBuf};

pub use curves::render_svg;
pub use spark::sparkline;
pub use words::render_word_bars_svg;

/// One run's losses, drawn as a dashed training curve and a solid validation curve in
/// one colour.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Shown in the legend, e.g. `run 12: layers=1`; the only thing that tells runs apart
    /// once colours start repeating.
    pub label: String,
    /// One entry per evaluated epoch, in any order; missing epochs leave a gap.
    pub points: Vec<Point>,
}

/// The losses recorded at the end of one epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Epoch number, the x coordinate.
    pub epoch: u32,
    /// Mean training loss in nats per character; NaN when it was not recorded.
    pub train_loss: f64,
    /// Validation loss in nats per character; NaN when it was not recorded.
    pub val_loss: f64,
}

/// How a loss chart looks.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotOptions {
    /// Drawn above the chart, e.g. the sweep name.
    pub title: String,
    /// Logarithmic y axis, for sweeps whose losses differ by orders of magnitude.
    pub log_y: bool,
    /// Width in pixels (SVG user units); at least 320 is used, smaller values are raised.
    pub width: u32,
    /// Height in pixels (SVG user units); at least 240 is used, smaller values are raised.
    pub height: u32,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            title: String::new(),
            log_y: false,
            width: 960,
            height: 560,
        }
    }
}

/// Why a chart could not be produced or written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The output path does not end in an extension we can write.
    #[error("cannot write plot to {path}: unsupported extension (expected .svg or .png)")]
    UnsupportedExtension {
        /// The path as given.
        path: PathBuf,
    },
    /// The SVG could not be rasterised; a bug in this module, not in the input.
    #[error("cannot render png: {0}")]
    Render(String),
    /// The output file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// Where the chart was being written.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
}

/// The loss chart of [`render_svg`] as a PNG of exactly `opts.width` × `opts.height`
/// pixels (after the minimum size is applied).
pub fn render_png(series: &[Series], opts: &PlotOptions) -> Result<Vec<u8>, PlotError> {
    raster::svg_to_png(&render_svg(series, opts))
}

/// Writes the loss chart to `path` as SVG or PNG, chosen by the extension (`.svg`,
/// `.png`, any case). The extension is checked before anything is rendered.
pub fn write_plot(path: &Path, series: &[Series], opts: &PlotOptions) -> Result<(), PlotError> {
    let bytes = match Format::of(path)? {
        Format::Svg => render_svg(series, opts).into_bytes(),
        Format::Png => render_png(series, opts)?,
    };
    write_file(path, &bytes)
}

/// The word chart of [`render_word_bars_svg`] as a PNG.
pub fn render_word_bars_png(
    rows: &[(String, f64, f64)],
    title: &str,
) -> Result<Vec<u8>, PlotError> {
    raster::svg_to_png(&render_word_bars_svg(rows, title))
}

/// Writes the word chart to `path` as SVG or PNG, chosen by the extension like
/// [`write_plot`].
pub fn write_word_bars(
    path: &Path,
    rows: &[(String, f64, f64)],
    title: &str,
) -> Result<(), PlotError> {
    let bytes = match Format::of(path)? {
        Format::Svg => render_word_bars_svg(rows, title).into_bytes(),
        Format::Png => render_word_bars_png(rows, title)?,
    };
    write_file(path, &bytes)
}

/// The output formats, named by file extension.
enum Format {
    /// `.svg`: the document as rendered.
    Svg,
    /// `.png`: the same document rasterised.
    Png,
}

impl Format {
    fn of(path: &Path) -> Result<Format, PlotError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("svg") => Ok(Format::Svg),
            Some("png") => Ok(Format::Png),
            _ => Err(PlotError::UnsupportedExtension {
                path: path.to_path_buf(),
            }),
        }
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), PlotError> {
    std::fs::write(path, bytes).map_err(|source| PlotError::Io {
        path: path.to_path_buf(),
        source,
    })
}
