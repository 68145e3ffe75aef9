//! Atomic file output: write to a temporary file in the target's directory, then rename.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
/// file (for outputs too large to hold in memory twice). `write` should buffer small writes.
pub(crate) fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let fail = |source: std::io::Error| EvalError::Write { path: path.to_path_buf(), source };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(fail)?;
    let name = path.file_name().ok_or_else(|| fail(std::io::Error::other("the path has no file name")))?;
    let tmp = parent.join(format!(
        ".{}.{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        write(&mut file)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    Ok(())
}

/// Encodes an RGB image as PNG and writes it atomically.
pub(crate) fn write_png(path: &Path, image: &image::RgbImage) -> Result<()> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|e| EvalError::Encode { path: path.to_path_buf(), reason: e.to_string() })?;
    write_atomic(path, bytes.get_ref())
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| EvalError::Encode { path: path.to_path_buf(), reason: e.to_string() })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}
