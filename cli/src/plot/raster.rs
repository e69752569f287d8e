//! SVG to PNG with `resvg`, using only the fonts embedded in the binary.
//!
//! System fonts are deliberately not loaded (the `system-fonts` feature is off): a PNG
//! must look the same on a laptop, in CI and in a bare container, and must never come
//! out with blank labels because a machine has no fonts installed.

use std::sync::{Arc, OnceLock};

use resvg::{tiny_skia, usvg};

use super::PlotError;

/// DejaVu Sans regular and bold, parsed once per process.
fn fonts() -> Arc<usvg::fontdb::Database> {
    static FONTS: OnceLock<Arc<usvg::fontdb::Database>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let mut db = usvg::fontdb::Database::new();
            for face in [dejavu::sans::regular(), dejavu::sans::bold()] {
                db.load_font_source(usvg::fontdb::Source::Binary(Arc::new(face)));
            }
            // Any family the SVG names that we lack falls back to the embedded face.
            for set in [
                usvg::fontdb::Database::set_sans_serif_family,
                usvg::fontdb::Database::set_serif_family,
                usvg::fontdb::Database::set_monospace_family,
            ] {
                set(&mut db, "DejaVu Sans");
            }
            Arc::new(db)
        })
        .clone()
}

/// Rasterises an SVG document at its own size (one user unit per pixel).
pub fn svg_to_png(svg: &str) -> Result<Vec<u8>, PlotError> {
    let options = usvg::Options {
        fontdb: fonts(),
        font_family: "DejaVu Sans".to_string(),
        ..Default::default()
    };
    let tree = usvg::Tree::from_str(svg, &options).map_err(|e| PlotError::Render(e.to_string()))?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height()).ok_or_else(|| {
        PlotError::Render(format!("empty image ({}x{})", size.width(), size.height()))
    })?;
    resvg::render(
        &tree,
        tiny_skia::Transform::identity(),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| PlotError::Render(e.to_string()))
}
