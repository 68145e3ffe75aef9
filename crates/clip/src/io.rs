//! File writing that never leaves a half-written file behind: the one atomic writer of the
//! workspace (weights, embeddings, manifests, reports, pictures).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` to `path` atomically (see [`write_atomic_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Writes through `write` into a temporary file next to `path` (same directory, so the rename
/// stays on one file system), syncs it, and renames it over `path`: readers see either the old
/// file or the complete new one. Missing parent directories are created. On any error the
/// temporary file is removed and `path` is untouched.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| std::io::Error::other("the output path has no file name"))?;
    std::fs::create_dir_all(&dir)?;
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.{}-{unique}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        write(&mut file)?;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Checks, before long work starts, that files can be written in `dir` (created if missing)
/// and, where the platform reports it, that at least `needed_bytes` are free there.
///
/// A small probe file is created and removed, which catches a read-only file system, missing
/// permissions and a path below a regular file. The error says what is wrong but not `dir`,
/// which callers put in their own messages.
pub fn check_output_dir(dir: &Path, needed_bytes: u64) -> std::io::Result<()> {
    let context = |what: &str, e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"));
    // create_dir_all only says "File exists" or "Not a directory" when a file is in the way.
    if let Some(file) = dir.ancestors().find(|a| a.exists() && !a.is_dir()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            format!("{} is a file, not a directory", file.display()),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| context("cannot create the output directory", e))?;
    if !dir.is_dir() {
        return Err(std::io::Error::new(std::io::ErrorKind::NotADirectory, "the output path is not a directory"));
    }
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    let written = std::fs::write(&probe, b"probe");
    let _ = std::fs::remove_file(&probe);
    written.map_err(|e| context("the output directory is not writable", e))?;
    if let Some(free) = available_bytes(dir)
        && free < needed_bytes
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!("not enough free space: {} needed, {} free", human_bytes(needed_bytes), human_bytes(free)),
        ));
    }
    Ok(())
}

/// [`check_output_dir`] for the directory that will hold the file `path`; also refuses a `path`
/// that is an existing directory.
pub fn check_output_file(path: &Path, needed_bytes: u64) -> std::io::Result<()> {
    if path.is_dir() {
        return Err(std::io::Error::new(std::io::ErrorKind::IsADirectory, "the output path is a directory"));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    check_output_dir(dir, needed_bytes)
}

/// Bytes available to an unprivileged user on the file system holding `dir`, if known.
#[cfg(unix)]
fn available_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `path` is a NUL-terminated string and `stat` is valid for writes of a statvfs.
    let status = unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) };
    if status != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    Some(u64::from(stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

#[cfg(not(unix))]
fn available_bytes(_dir: &Path) -> Option<u64> {
    None
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("clip-burn-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("out.bin");
        write_atomic(&target, b"old").unwrap();
        write_atomic(&target, b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let err = write_atomic_with(&target, |_| Err(std::io::Error::other("disk full"))).unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read(&target).unwrap(), b"new", "a failed write must leave the old file");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn output_checks_refuse_what_cannot_be_written() {
        let dir = std::env::temp_dir().join(format!("clip-burn-io-check-{}", std::process::id()));
        check_output_dir(&dir.join("new/run"), 0).unwrap();
        assert_eq!(std::fs::read_dir(dir.join("new/run")).unwrap().count(), 0, "the probe is removed");
        let file = dir.join("file.txt");
        std::fs::write(&file, b"x").unwrap();
        let err = check_output_dir(&file.join("out"), 0).unwrap_err();
        assert!(err.to_string().ends_with("file.txt is a file, not a directory"), "{err}");
        let err = check_output_file(&file.join("emb.safetensors"), 0).unwrap_err();
        assert!(err.to_string().ends_with("file.txt is a file, not a directory"), "{err}");
        let err = check_output_file(&dir, 0).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
        check_output_file(&dir.join("emb.safetensors"), 1).unwrap();
        if cfg!(unix) {
            let err = check_output_dir(&dir, u64::MAX).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::StorageFull);
            assert!(err.to_string().starts_with("not enough free space: 16777216.0 TiB needed, "), "{err}");
        }
        assert_eq!(human_bytes(1536), "1.5 KiB");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
