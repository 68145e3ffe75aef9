//! Datasets and split protocols (docs/METHOD.md sections 3 and 4).
//!
//! - [`Hands11k`]: 11k Hands, its four aspects, identity thresholds and combined gallery;
//! - [`PolyuHd`]: PolyU hand dorsal (HD) with the `502-712` distractors;
//! - [`FolderDataset`]: `root/<identity>/<images>` for one's own data;
//! - [`split`]: identity labels ([`Identity`]), the seeded protocol shared by all three
//!   (one validation image per training identity, Monte Carlo query/gallery runs);
//! - [`SplitManifest`]: a drawn split as JSON, saved atomically and reloaded with checks;
//! - [`load_parallel`] / [`open_image`]: decoding many images on rayon's pool with clear errors.
//!
//! ```no_run
//! use std::path::Path;
//! use handid::data::{DatasetKind, Hands11k, SplitManifest};
//!
//! let root = Path::new("data/11k");
//! let manifest = Hands11k::open(root)?.split(42, 10)?;
//! manifest.save(Path::new("splits.json"))?;
//! let again = SplitManifest::load(Path::new("splits.json"), root, DatasetKind::Hands11k)?;
//! for subset in &again.subsets {
//!     let run = &subset.runs[0];
//!     let (query_labels, gallery_labels) = run.integer_labels();
//!     println!("{}: {} queries vs {} gallery images", subset.name, query_labels.len(), gallery_labels.len());
//! }
//! # Ok::<(), handid::data::DataError>(())
//! ```

use std::path::Path;

pub mod draw;
pub mod error;
pub mod folders;
pub mod hands11k;
pub mod load;
pub mod manifest;
pub mod polyu_hd;
pub mod split;
pub mod synthetic;
#[cfg(test)]
pub(crate) mod testutil;

pub use draw::{DrawOptions, draw_split};
pub use error::DataError;
pub use folders::{FolderDataset, FolderSplitOptions};
pub use hands11k::{Aspect, HandInfoRow, Hands11k, Hands11kCounts, read_hand_info};
pub use load::{LoadError, load_parallel, open_image, open_images};
pub use manifest::{DatasetKind, MANIFEST_FORMAT, SplitManifest};
pub use polyu_hd::{HdSplitCounts, PolyuHd, ProtocolCounts};
pub use split::{Entry, Identity, IdentityImages, RunSplit, SubsetSplit, SubsetSummary, TrainClasses};
pub use synthetic::SyntheticHands;

/// File extensions (ASCII case ignored) taken as images when listing folders.
pub const IMAGE_EXTENSIONS: [&str; 7] = [".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"];

/// Whether a file name ends in one of [`IMAGE_EXTENSIONS`].
pub fn has_image_extension(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    IMAGE_EXTENSIONS.iter().any(|ext| lower.len() > ext.len() && lower.ends_with(ext))
}

/// The file name of `path` as UTF-8 (manifests store paths as text).
fn utf8_file_name(path: &Path) -> Result<String, DataError> {
    match path.file_name().map(|n| n.to_str()) {
        Some(Some(name)) => Ok(name.to_string()),
        _ => Err(DataError::layout(path, "file name is not valid UTF-8 (split manifests store paths as text)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_extensions() {
        for yes in ["a.jpg", "B.JPEG", "c.png", "d.Tif", "e.webp", "x.y.bmp"] {
            assert!(has_image_extension(yes), "{yes}");
        }
        for no in ["a.txt", "jpg", ".jpg", "a.jpg.bak", "HandInfo.csv"] {
            assert!(!has_image_extension(no), "{no}");
        }
    }
}
