//! Parallel image loading: decode many images on rayon's thread pool, in order, with the first
//! failure reported with its path.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use image::{DynamicImage, ImageFormat};
use rayon::prelude::*;

use super::error::DataError;

/// A failure of [`load_parallel`]: the first path (in list order) whose loader failed.
#[derive(Debug)]
pub struct LoadError<E> {
    /// Position of the path in the list.
    pub index: usize,
    /// The path.
    pub path: PathBuf,
    /// The loader's error.
    pub error: E,
}

impl<E: fmt::Display> fmt::Display for LoadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot load image {} (item {} of the list): {}", self.path.display(), self.index, self.error)
    }
}

impl<E: std::error::Error + 'static> std::error::Error for LoadError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Runs `load` on every path in parallel (rayon) and returns the results in the order of
/// `paths`.
///
/// On failure, returns the error of the *first* failing path in list order (not the first to
/// fail in time), so the error is the same on every run; once a failure is known, later paths
/// are skipped. `load` typically opens, decodes and resizes an image, e.g. [`open_image`]
/// followed by a transform.
pub fn load_parallel<P, T, E, F>(paths: &[P], load: F) -> Result<Vec<T>, LoadError<E>>
where
    P: AsRef<Path> + Sync,
    T: Send,
    E: Send,
    F: Fn(&Path) -> Result<T, E> + Sync,
{
    let first_failure = AtomicUsize::new(usize::MAX);
    let results: Vec<Option<Result<T, E>>> = paths
        .par_iter()
        .enumerate()
        .map(|(i, path)| {
            if i > first_failure.load(Ordering::Relaxed) {
                return None;
            }
            let result = load(path.as_ref());
            if result.is_err() {
                first_failure.fetch_min(i, Ordering::Relaxed);
            }
            Some(result)
        })
        .collect();
    // A path is only skipped when an earlier one failed, so the first error comes before any gap.
    let mut out = Vec::with_capacity(results.len());
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Some(Ok(value)) => out.push(value),
            Some(Err(error)) => return Err(LoadError { index, path: paths[index].as_ref().to_path_buf(), error }),
            None => break,
        }
    }
    Ok(out)
}

/// Opens and decodes one image, with an error that names the file and says whether it is
/// missing, empty, of an unknown format, truncated (JPEG without its end marker), corrupt or
/// too large. Decoding is [`clip_burn::preprocess::decode_image`]'s: images declaring more than
/// [`clip_burn::preprocess::MAX_PIXELS`] pixels are refused and the EXIF orientation is applied.
pub fn open_image(path: &Path) -> Result<DynamicImage, DataError> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::MissingPath { path: path.to_path_buf(), what: "image" },
        _ => DataError::io(path, "read", e),
    })?;
    let fail = |message: String| DataError::Image { path: path.to_path_buf(), message };
    if bytes.is_empty() {
        return Err(fail("the file is empty".into()));
    }
    let format = image::guess_format(&bytes).map_err(|_| fail("not an image of a known format".into()))?;
    if format == ImageFormat::Jpeg && jpeg_is_truncated(&bytes) {
        return Err(fail(format!(
            "truncated JPEG: no end-of-image marker after the image data ({} bytes)",
            bytes.len()
        )));
    }
    // One decoder for the whole workspace: the same size limit and EXIF orientation as CLIP's.
    clip_burn::preprocess::decode_image(&bytes, path).map_err(|e| fail(e.reason()))
}

/// Opens and decodes all images in parallel ([`load_parallel`] with [`open_image`]).
pub fn open_images<P: AsRef<Path> + Sync>(paths: &[P]) -> Result<Vec<DynamicImage>, DataError> {
    load_parallel(paths, open_image).map_err(|e| e.error)
}

/// Whether a JPEG stream stops before the end of its image: walks the marker segments to the
/// first start-of-scan of the main image (skipping metadata such as an embedded EXIF thumbnail)
/// and looks for an end-of-image marker after it. Byte stuffing keeps 0xFF 0xD9 out of the
/// entropy-coded data, so the marker cannot be found by accident. Malformed headers answer
/// `false` and are left to the decoder.
fn jpeg_is_truncated(bytes: &[u8]) -> bool {
    let mut i = 2; // after SOI
    loop {
        if i + 1 >= bytes.len() {
            return true;
        }
        if bytes[i] != 0xFF {
            return false;
        }
        let marker = bytes[i + 1];
        match marker {
            0xFF => i += 1,               // fill byte
            0x01 | 0xD0..=0xD8 => i += 2, // markers without a length
            0xD9 => return false,         // EOI before any scan: the decoder decides
            _ => {
                if i + 3 >= bytes.len() {
                    return true;
                }
                let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
                let end = i + 2 + len;
                if end > bytes.len() {
                    return true;
                }
                if marker == 0xDA {
                    return !bytes[end..].windows(2).any(|w| w == [0xFF, 0xD9]);
                }
                i = end;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::TempDir;
    use image::{Rgb, RgbImage};

    fn write_jpeg(path: &Path, w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8]));
        img.save_with_format(path, ImageFormat::Jpeg).unwrap();
        std::fs::read(path).unwrap()
    }

    #[test]
    fn loads_in_order_and_reports_first_failure() {
        let paths: Vec<PathBuf> = (0..200).map(|i| PathBuf::from(format!("img{i}.jpg"))).collect();
        let ok = load_parallel(&paths, |p| Ok::<_, String>(p.to_string_lossy().len())).unwrap();
        assert_eq!(ok, paths.iter().map(|p| p.to_string_lossy().len()).collect::<Vec<_>>());
        let err = load_parallel(&paths, |p| {
            let n: usize = p.to_string_lossy()[3..].trim_end_matches(".jpg").parse().unwrap();
            if n % 50 == 37 { Err(format!("bad {n}")) } else { Ok(n) }
        })
        .unwrap_err();
        assert_eq!((err.index, err.error.as_str()), (37, "bad 37"));
        assert!(err.to_string().contains("img37.jpg"), "{err}");
        let empty: Vec<PathBuf> = Vec::new();
        assert!(load_parallel(&empty, |_| Ok::<u8, String>(0)).unwrap().is_empty());
    }

    #[test]
    fn open_image_errors_are_clear() {
        let dir = TempDir::new("open-image");
        let good = dir.path().join("good.jpg");
        let bytes = write_jpeg(&good, 40, 30);
        let img = open_image(&good).unwrap();
        assert_eq!((img.width(), img.height()), (40, 30));

        let truncated = dir.path().join("truncated.jpg");
        std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let err = open_image(&truncated).unwrap_err();
        assert!(err.to_string().contains("truncated") && err.to_string().contains("truncated.jpg"), "{err}");

        let garbage = dir.path().join("garbage.png");
        std::fs::write(&garbage, b"this is not an image at all").unwrap();
        let err = open_image(&garbage).unwrap_err();
        assert!(matches!(err, DataError::Image { .. }) && err.to_string().contains("garbage.png"), "{err}");

        let empty = dir.path().join("empty.jpg");
        std::fs::write(&empty, b"").unwrap();
        assert!(open_image(&empty).unwrap_err().to_string().contains("empty"));

        let png = dir.path().join("cut.png");
        RgbImage::new(64, 64).save(&png).unwrap();
        let png_bytes = std::fs::read(&png).unwrap();
        std::fs::write(&png, &png_bytes[..png_bytes.len() / 2]).unwrap();
        assert!(matches!(open_image(&png), Err(DataError::Image { .. })));

        let missing = dir.path().join("missing.jpg");
        let err = open_image(&missing).unwrap_err();
        assert!(matches!(err, DataError::MissingPath { .. }) && err.to_string().contains("missing.jpg"), "{err}");

        let err = open_images(&[good.clone(), truncated.clone(), missing.clone()]).unwrap_err();
        assert!(err.to_string().contains("truncated.jpg"), "{err}");
        assert_eq!(open_images(&[good.clone(), good]).unwrap().len(), 2);
    }

    #[test]
    fn jpeg_scan_walk() {
        // SOI, APP0 (len 4), SOS (len 2), data, EOI.
        let complete = [0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 1, 2, 0xFF, 0xDA, 0, 2, 9, 9, 0xFF, 0xD9];
        assert!(!jpeg_is_truncated(&complete));
        assert!(jpeg_is_truncated(&complete[..complete.len() - 2]));
        assert!(jpeg_is_truncated(&complete[..7]));
        // An EOI inside an APP segment (an EXIF thumbnail) does not count.
        let thumb = [0xFF, 0xD8, 0xFF, 0xE1, 0, 6, 0xFF, 0xD9, 0xFF, 0xDA, 0xFF, 0xDA, 0, 2, 9, 9];
        assert!(jpeg_is_truncated(&thumb));
    }
}
