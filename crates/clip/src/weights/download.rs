//! Downloading weights: resumable HTTP(S) download with SHA-256 verification.
//!
//! [`download`] writes into `<dest>.part`, resumes it with an HTTP `Range` request when a
//! previous attempt (in this call, or in an earlier run) was interrupted, checks the SHA-256 of
//! the complete file and only then renames it to `dest`. Nothing the user already has is ever
//! deleted or overwritten:
//! - a file already at `dest` is verified and kept whatever the outcome (a mismatch is an error
//!   that names both digests);
//! - a completed download whose digest does not match stays at `<dest>.part`, and the error
//!   says so (delete it to download again).
//!
//! The client is `ureq` with rustls (no system TLS library); proxies come from the usual
//! environment variables (`HTTPS_PROXY`, `NO_PROXY`, ...).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Environment variable naming the weights directory (overrides the platform cache directory).
pub const WEIGHTS_DIR_ENV: &str = "CLIP_HANDID_WEIGHTS_DIR";

/// The weights directory: `$CLIP_HANDID_WEIGHTS_DIR` if set, else the platform cache directory
/// (`$XDG_CACHE_HOME` or `~/.cache` on Linux, `~/Library/Caches` on macOS, `%LOCALAPPDATA%` on
/// Windows) followed by `clip-handid`.
pub fn default_weights_dir() -> Result<PathBuf, String> {
    match std::env::var_os(WEIGHTS_DIR_ENV) {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        _ => dirs::cache_dir().map(|d| d.join("clip-handid")).ok_or_else(|| {
            format!("no platform cache directory is known here; set {WEIGHTS_DIR_ENV} or pass a directory")
        }),
    }
}

/// The partial-download file of `dest` (`<dest>.part`).
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".part");
    dest.with_file_name(name)
}

/// Lower-case hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Errors of [`download`]; each names the address or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// No connection could be made (no network, unknown host, refused, proxy failure).
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The address.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{url}: the server answered HTTP {status}")]
    Status {
        /// The address.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The transfer broke off and the retries were used up; the partial file is kept.
    #[error(
        "{url}: the download was interrupted after {received} bytes ({reason}); the partial file {} is kept and \
         the next run resumes it",
        part.display()
    )]
    Interrupted {
        /// The address.
        url: String,
        /// The partial file.
        part: PathBuf,
        /// Bytes in the partial file.
        received: u64,
        /// The last error.
        reason: String,
    },
    /// The downloaded file's SHA-256 is not the expected one; the file is kept.
    #[error(
        "{}: SHA-256 mismatch: expected {expected}, found {found}; the file was kept (nothing was deleted): delete \
         it to download again",
        path.display()
    )]
    Checksum {
        /// The downloaded (partial-named) file.
        path: PathBuf,
        /// The expected digest.
        expected: String,
        /// The digest found.
        found: String,
    },
    /// A file already at the destination does not have the expected SHA-256; it is kept.
    #[error(
        "{}: this file is already there but its SHA-256 is {found}, expected {expected}; it was left untouched: \
         move it away (or delete it) to download again",
        path.display()
    )]
    Existing {
        /// The existing file.
        path: PathBuf,
        /// The expected digest.
        expected: String,
        /// The digest found.
        found: String,
    },
    /// The server's answer cannot be used (bad `Content-Range`, ...).
    #[error("{url}: {reason}")]
    Protocol {
        /// The address.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl DownloadError {
    /// Whether the error means the server could not be reached at all (the offline case, where
    /// the user should bring the file by hand).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, DownloadError::Unreachable { .. })
    }
}

/// Progress reports from [`download`]; every method has an empty default.
pub trait Progress {
    /// A transfer starts: the total size if the server said it, and the bytes already there
    /// (resumed from a partial file).
    fn start(&mut self, _total: Option<u64>, _already: u64) {}
    /// `bytes` more were written.
    fn advance(&mut self, _bytes: u64) {}
    /// An attempt failed and another one follows.
    fn retry(&mut self, _attempt: u32, _reason: &str) {}
    /// The complete file is being hashed.
    fn verifying(&mut self) {}
}

/// A [`Progress`] that reports nothing.
pub struct Silent;

impl Progress for Silent {}

/// Network settings of [`download`].
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Attempts in all (a broken-off transfer is resumed by the next attempt).
    pub attempts: u32,
    /// Pause before a new attempt (doubled each time).
    pub retry_delay: Duration,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// Limit on waiting for the response headers and on each read of the body.
    pub read_timeout: Duration,
    /// Use the proxy named by the environment (`HTTPS_PROXY`, `ALL_PROXY`, ... with `NO_PROXY`).
    pub proxy_from_env: bool,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            attempts: 5,
            retry_delay: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            proxy_from_env: true,
        }
    }
}

/// What to download.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The address.
    pub url: &'a str,
    /// The expected lower-case hex SHA-256; `None` downloads without verification (the digest
    /// found is still reported).
    pub sha256: Option<&'a str>,
    /// Where the verified file goes.
    pub dest: &'a Path,
}

/// The result of [`download`].
#[derive(Debug, Clone)]
pub struct Downloaded {
    /// The file (`Target::dest`).
    pub path: PathBuf,
    /// Its SHA-256.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// The file was already there (verified, nothing downloaded).
    pub already_present: bool,
    /// The transfer continued a partial file.
    pub resumed: bool,
    /// The SHA-256 was checked against an expected value.
    pub verified: bool,
}

enum Attempt {
    Complete,
    /// No answer came (connection, DNS, TLS or timeout before the response headers).
    NoResponse(String),
    /// Broke off; retry with what the partial file holds.
    Broken(String),
}

/// Downloads `target.url` to `target.dest` (see the module documentation).
pub fn download(
    target: &Target,
    options: &DownloadOptions,
    progress: &mut dyn Progress,
) -> Result<Downloaded, DownloadError> {
    let dest = target.dest;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DownloadError::Io { path: path.clone(), source }
    };
    let expected = target.sha256.map(str::to_ascii_lowercase);
    if dest.exists() {
        progress.verifying();
        let found = sha256_file(dest).map_err(io(dest))?;
        let bytes = std::fs::metadata(dest).map_err(io(dest))?.len();
        return match &expected {
            Some(want) if *want != found => {
                Err(DownloadError::Existing { path: dest.into(), expected: want.clone(), found })
            }
            _ => Ok(Downloaded {
                path: dest.into(),
                sha256: found,
                bytes,
                already_present: true,
                resumed: false,
                verified: expected.is_some(),
            }),
        };
    }
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let part = part_path(dest);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(options.connect_timeout))
        .timeout_recv_response(Some(options.read_timeout))
        .timeout_per_read(Some(options.read_timeout))
        .proxy(if options.proxy_from_env { ureq::Proxy::try_from_env() } else { None })
        .user_agent(format!("clip-burn/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .into();

    let mut resumed = false;
    let mut delay = options.retry_delay;
    let attempts = options.attempts.max(1);
    for attempt in 1..=attempts {
        let offset = match std::fs::metadata(&part) {
            Ok(m) => m.len(),
            Err(_) => 0,
        };
        resumed |= offset > 0;
        let outcome = transfer(&agent, target.url, &part, offset, progress);
        match outcome {
            Ok(Attempt::Complete) => break,
            // the first request got no answer at all: offline, or the host is down
            Ok(Attempt::NoResponse(reason)) if attempt == 1 => {
                return Err(DownloadError::Unreachable { url: target.url.into(), reason });
            }
            Ok(Attempt::Broken(reason) | Attempt::NoResponse(reason)) => {
                if attempt == attempts {
                    let received = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
                    if received == 0 {
                        return Err(DownloadError::Unreachable { url: target.url.into(), reason });
                    }
                    return Err(DownloadError::Interrupted { url: target.url.into(), part, received, reason });
                }
                progress.retry(attempt, &reason);
                std::thread::sleep(delay);
                delay *= 2;
            }
            Err(e) => return Err(e),
        }
    }

    progress.verifying();
    let found = sha256_file(&part).map_err(io(&part))?;
    if let Some(want) = &expected
        && *want != found
    {
        return Err(DownloadError::Checksum { path: part, expected: want.clone(), found });
    }
    let bytes = std::fs::metadata(&part).map_err(io(&part))?.len();
    std::fs::rename(&part, dest).map_err(io(dest))?;
    Ok(Downloaded {
        path: dest.into(),
        sha256: found,
        bytes,
        already_present: false,
        resumed,
        verified: expected.is_some(),
    })
}

/// `Content-Range: bytes START-END/TOTAL` -> (START, TOTAL if given).
fn content_range(value: &str) -> Option<(Option<u64>, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = if total.trim() == "*" { None } else { Some(total.trim().parse().ok()?) };
    let start = if range.trim() == "*" { None } else { Some(range.split_once('-')?.0.trim().parse().ok()?) };
    Some((start, total))
}

/// One HTTP exchange appending to the partial file from `offset`.
fn transfer(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    offset: u64,
    progress: &mut dyn Progress,
) -> Result<Attempt, DownloadError> {
    let io = |source| DownloadError::Io { path: part.into(), source };
    let mut request = agent.get(url);
    if offset > 0 {
        request = request.header("Range", format!("bytes={offset}-"));
    }
    let response = match request.call() {
        Ok(r) => r,
        Err(e @ (ureq::Error::BadUri(_) | ureq::Error::InvalidProxyUrl)) => {
            return Err(DownloadError::Unreachable { url: url.into(), reason: e.to_string() });
        }
        // DNS, refused or reset connections, TLS failures, timeouts before the answer
        Err(e) => return Ok(Attempt::NoResponse(e.to_string())),
    };
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (append, total) = match status {
        200 => {
            // full content: a fresh start (the server may have ignored our Range)
            let total = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
            (false, total)
        }
        206 if offset > 0 => {
            let range = header("content-range").and_then(|v| content_range(&v));
            match range {
                Some((Some(start), total)) if start == offset => (true, total),
                _ => {
                    return Err(DownloadError::Protocol {
                        url: url.into(),
                        reason: format!(
                            "asked for bytes from {offset}, the server answered Content-Range {:?}",
                            header("content-range")
                        ),
                    });
                }
            }
        }
        416 if offset > 0 => {
            // nothing left after `offset`: complete if the server's total says so
            let total = header("content-range").and_then(|v| content_range(&v)).and_then(|(_, t)| t);
            return match total {
                Some(t) if t == offset => Ok(Attempt::Complete),
                Some(t) => Err(DownloadError::Protocol {
                    url: url.into(),
                    reason: format!(
                        "the partial file {} holds {offset} bytes but the file has {t}; delete the partial file",
                        part.display()
                    ),
                }),
                // no total given: let the checksum decide
                None => Ok(Attempt::Complete),
            };
        }
        _ => return Err(DownloadError::Status { url: url.into(), status }),
    };

    let mut file = if append {
        OpenOptions::new().append(true).open(part).map_err(io)?
    } else {
        File::create(part).map_err(io)?
    };
    let already = if append { offset } else { 0 };
    progress.start(total, already);
    let mut written = already;
    let mut reader = response.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 18];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                file.write_all(&buf[..n]).map_err(io)?;
                written += n as u64;
                progress.advance(n as u64);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                file.sync_all().map_err(io)?;
                return Ok(Attempt::Broken(e.to_string()));
            }
        }
    }
    file.sync_all().map_err(io)?;
    match total {
        Some(t) if written < t => Ok(Attempt::Broken(format!("connection closed after {written} of {t} bytes"))),
        Some(t) if written > t => Err(DownloadError::Protocol {
            url: url.into(),
            reason: format!("received {written} bytes, more than the announced {t}"),
        }),
        _ => Ok(Attempt::Complete),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_header() {
        assert_eq!(content_range("bytes 100-199/200"), Some((Some(100), Some(200))));
        assert_eq!(content_range("bytes 5-9/*"), Some((Some(5), None)));
        assert_eq!(content_range("bytes */300"), Some((None, Some(300))));
        assert_eq!(content_range("items 1-2/3"), None);
    }

    #[test]
    fn paths_and_digests() {
        assert_eq!(part_path(Path::new("/a/b/RN50.pt")), Path::new("/a/b/RN50.pt.part"));
        let dir = std::env::temp_dir().join(format!("clip-burn-sha-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("abc");
        std::fs::write(&f, b"abc").unwrap();
        // SHA-256("abc"), FIPS 180-2 test vector
        assert_eq!(sha256_file(&f).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
