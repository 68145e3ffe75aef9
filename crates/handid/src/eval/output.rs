//! Atomic file output: write to a temporary file in the target's directory, then rename.

use std::io::Write;
use std::path::Path;

use super::error::{EvalError, Result};

/// Writes `bytes` to `path` atomically: readers see either the old file or the complete new one.
///
/// The bytes go to a hidden temporary file next to `path` (same directory, so the final rename
/// stays on one file system), are flushed to disk, and the file is renamed over `path`. Missing
/// parent directories are created. On failure the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Like [`write_atomic`], but the content is produced by `write` directly into the temporary
/// file (for outputs too large to hold in memory twice).
pub(crate) fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    clip_burn::io::write_atomic_with(path, write)
        .map_err(|source| EvalError::Write { path: path.to_path_buf(), source })
}

/// Encodes an RGB image as PNG (`path` names the file it is meant for, in errors).
pub(crate) fn encode_png(path: &Path, image: &image::RgbImage) -> Result<Vec<u8>> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|e| EvalError::Encode { path: path.to_path_buf(), reason: e.to_string() })?;
    Ok(bytes.into_inner())
}

/// Encodes an RGB image as PNG and writes it atomically.
pub(crate) fn write_png(path: &Path, image: &image::RgbImage) -> Result<()> {
    write_atomic(path, &encode_png(path, image)?)
}

/// Serialises `value` as pretty JSON with a final newline (`path` names the file, in errors).
pub(crate) fn encode_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| EvalError::Encode { path: path.to_path_buf(), reason: e.to_string() })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, &encode_json(path, value)?)
}
