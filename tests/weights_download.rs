//! Downloads against a small HTTP server on the loopback interface, started by each test:
//! success, checksum mismatch (nothing deleted), interrupted then resumed with a Range request,
//! server errors, and an address nobody listens on.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clip_handid::clip::weights::download::{
    DownloadError, DownloadOptions, Downloaded, Progress, Silent, Target, download, part_path, sha256_file,
};

/// How the server answers one connection.
#[derive(Clone, Copy)]
enum Reply {
    /// 200 with the whole body, or 206 from the requested offset when `range` is set
    /// (416 when the offset is at or past the end).
    Body { range: bool, cut_after: Option<usize> },
    /// An error status with a short body.
    Status(u16),
}

struct Server {
    addr: SocketAddr,
    ranges: Arc<Mutex<Vec<Option<String>>>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `replies.len()` connections (one reply each, in order) on 127.0.0.1, then stops;
    /// it gives up after 60 s without a connection.
    fn start(body: Vec<u8>, replies: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let ranges = Arc::new(Mutex::new(Vec::new()));
        let seen = ranges.clone();
        let thread = std::thread::spawn(move || {
            for reply in replies {
                let deadline = Instant::now() + Duration::from_secs(60);
                let stream = loop {
                    match listener.accept() {
                        Ok((s, _)) => break s,
                        Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                        Err(_) => return,
                    }
                };
                let range = answer(stream, &body, reply);
                seen.lock().unwrap().push(range);
            }
        });
        Self { addr, ranges, thread: Some(thread) }
    }

    fn url(&self) -> String {
        format!("http://{}/weights/model.bin", self.addr)
    }

    /// The Range header of each request served so far.
    fn ranges(&mut self) -> Vec<Option<String>> {
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.ranges.lock().unwrap().clone()
    }
}

/// Reads one request and answers it; returns its Range header.
fn answer(stream: TcpStream, body: &[u8], reply: Reply) -> Option<String> {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_string());
        }
    }
    let mut out = stream;
    let offset: Option<usize> =
        range.as_deref().and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok());
    let (head, payload): (String, &[u8]) = match (reply, offset) {
        (Reply::Status(code), _) => (format!("HTTP/1.1 {code} Error\r\nContent-Length: 5\r\n"), b"error"),
        (Reply::Body { range: true, .. }, Some(o)) if o >= body.len() => (
            format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\n",
                body.len()
            ),
            b"",
        ),
        (Reply::Body { range: true, .. }, Some(o)) => (
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {o}-{}/{}\r\nContent-Length: {}\r\n",
                body.len() - 1,
                body.len(),
                body.len() - o
            ),
            &body[o..],
        ),
        (Reply::Body { .. }, _) => (format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n", body.len()), body),
    };
    let cut = match reply {
        Reply::Body { cut_after: Some(n), .. } => n.min(payload.len()),
        _ => payload.len(),
    };
    let _ = out.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes());
    let _ = out.write_all(&payload[..cut]);
    let _ = out.flush();
    let _ = out.shutdown(std::net::Shutdown::Both);
    range
}

fn content() -> Vec<u8> {
    (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

fn digest(bytes: &[u8]) -> String {
    let dir = scratch_dir("digest");
    let f = dir.join("x");
    std::fs::write(&f, bytes).unwrap();
    sha256_file(&f).unwrap()
}

/// A fresh directory, unique to this call (tests run in parallel threads).
fn scratch_dir(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("clip-handid-download-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn options(attempts: u32) -> DownloadOptions {
    DownloadOptions {
        attempts,
        retry_delay: Duration::ZERO,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(10),
        proxy_from_env: false,
    }
}

#[derive(Default)]
struct Recorder {
    starts: Vec<(Option<u64>, u64)>,
    advanced: u64,
    retries: u32,
}

impl Progress for Recorder {
    fn start(&mut self, total: Option<u64>, already: u64) {
        self.starts.push((total, already));
    }
    fn advance(&mut self, bytes: u64) {
        self.advanced += bytes;
    }
    fn retry(&mut self, _attempt: u32, _reason: &str) {
        self.retries += 1;
    }
}

fn fetch(
    url: &str,
    sha: Option<&str>,
    dest: &Path,
    attempts: u32,
    p: &mut dyn Progress,
) -> Result<Downloaded, DownloadError> {
    download(&Target { url, sha256: sha, dest }, &options(attempts), p)
}

#[test]
fn downloads_verifies_and_then_finds_the_file_present() {
    let body = content();
    let sha = digest(&body);
    let mut server = Server::start(body.clone(), vec![Reply::Body { range: true, cut_after: None }]);
    let dest = scratch_dir("ok").join("sub/model.bin");
    let mut progress = Recorder::default();
    let got = fetch(&server.url(), Some(&sha), &dest, 3, &mut progress).unwrap();
    assert!(got.verified && !got.resumed && !got.already_present);
    assert_eq!((got.sha256.as_str(), got.bytes), (sha.as_str(), body.len() as u64));
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert!(!part_path(&dest).exists());
    assert_eq!(progress.starts, [(Some(body.len() as u64), 0)]);
    assert_eq!(progress.advanced, body.len() as u64);
    assert_eq!(server.ranges(), [None]);

    // a second run finds the verified file and makes no request (the server is gone)
    let again = fetch(&server.url(), Some(&sha), &dest, 3, &mut Silent).unwrap();
    assert!(again.already_present && again.verified);
}

#[test]
fn a_checksum_mismatch_deletes_nothing() {
    let body = content();
    let wrong = digest(b"something else");
    let mut server = Server::start(body.clone(), vec![Reply::Body { range: true, cut_after: None }]);
    let dest = scratch_dir("mismatch").join("model.bin");
    let err = fetch(&server.url(), Some(&wrong), &dest, 1, &mut Silent).unwrap_err();
    let message = err.to_string();
    let found = digest(&body);
    assert!(matches!(err, DownloadError::Checksum { .. }), "{message}");
    assert!(message.contains(&format!("expected {wrong}, found {found}")), "{message}");
    assert!(!dest.exists(), "an unverified file must not take the destination name");
    assert_eq!(std::fs::read(part_path(&dest)).unwrap(), body, "the downloaded bytes are kept");
    server.ranges();

    // a file the user already has at the destination is verified and never replaced
    let dest = scratch_dir("existing").join("model.bin");
    std::fs::write(&dest, b"the user's own file").unwrap();
    let err = fetch("http://127.0.0.1:9/never-contacted", Some(&found), &dest, 1, &mut Silent).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, DownloadError::Existing { .. }), "{message}");
    assert!(message.contains(&format!("expected {found}")) && message.contains("left untouched"), "{message}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"the user's own file");
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let body = content();
    let sha = digest(&body);
    let half = 123_457;

    // within one call: the first connection breaks off, the retry resumes
    let mut server = Server::start(
        body.clone(),
        vec![Reply::Body { range: true, cut_after: Some(half) }, Reply::Body { range: true, cut_after: None }],
    );
    let dest = scratch_dir("resume").join("model.bin");
    let mut progress = Recorder::default();
    let got = fetch(&server.url(), Some(&sha), &dest, 3, &mut progress).unwrap();
    assert!(got.resumed && got.verified);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(server.ranges(), [None, Some(format!("bytes={half}-"))]);
    assert_eq!(progress.retries, 1);
    assert_eq!(progress.starts, [(Some(body.len() as u64), 0), (Some(body.len() as u64), half as u64)]);

    // across runs: the first run gives up and keeps the partial file, the next one resumes it
    let mut server = Server::start(body.clone(), vec![Reply::Body { range: true, cut_after: Some(half) }]);
    let dest = scratch_dir("resume-later").join("model.bin");
    let err = fetch(&server.url(), Some(&sha), &dest, 1, &mut Silent).unwrap_err();
    assert!(matches!(err, DownloadError::Interrupted { received, .. } if received == half as u64), "{err}");
    assert!(err.to_string().contains("next run resumes it"), "{err}");
    assert_eq!(std::fs::metadata(part_path(&dest)).unwrap().len(), half as u64);
    server.ranges();
    let mut server = Server::start(body.clone(), vec![Reply::Body { range: true, cut_after: None }]);
    let got = fetch(&server.url(), Some(&sha), &dest, 1, &mut Silent).unwrap();
    assert!(got.resumed);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(server.ranges(), [Some(format!("bytes={half}-"))]);

    // a server that ignores Range: the transfer starts over and still ends verified
    let mut server = Server::start(
        body.clone(),
        vec![Reply::Body { range: false, cut_after: Some(half) }, Reply::Body { range: false, cut_after: None }],
    );
    let dest = scratch_dir("no-range").join("model.bin");
    fetch(&server.url(), Some(&sha), &dest, 2, &mut Silent).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(server.ranges().len(), 2);

    // a partial file that is already complete: the server answers 416 and the file is verified
    let dest = scratch_dir("complete-part").join("model.bin");
    std::fs::write(part_path(&dest), &body).unwrap();
    let mut server = Server::start(body.clone(), vec![Reply::Body { range: true, cut_after: None }]);
    fetch(&server.url(), Some(&sha), &dest, 1, &mut Silent).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(server.ranges(), [Some(format!("bytes={}-", body.len()))]);
}

#[test]
fn server_errors_and_unreachable_servers() {
    for code in [404u16, 500] {
        let mut server = Server::start(content(), vec![Reply::Status(code)]);
        let dest = scratch_dir(&format!("status-{code}")).join("model.bin");
        let err = fetch(&server.url(), None, &dest, 3, &mut Silent).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, DownloadError::Status { status, .. } if status == code), "{message}");
        assert!(message.contains(&format!("HTTP {code}")) && message.contains("/weights/model.bin"), "{message}");
        assert!(!dest.exists() && !part_path(&dest).exists());
        assert_eq!(server.ranges().len(), 1, "an error status is not retried");
    }

    // nobody listens on this port
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dest = scratch_dir("unreachable").join("model.bin");
    let err = fetch(&format!("http://127.0.0.1:{port}/x.pt"), None, &dest, 3, &mut Silent).unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn fetch_convert_and_load_an_archive() {
    // the path fetch_weights takes, on a tiny TorchScript archive served locally
    let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/weights/vit_ts_fp16.pt");
    let body = std::fs::read(&archive).unwrap();
    let sha = sha256_file(&archive).unwrap();
    let mut server = Server::start(body, vec![Reply::Body { range: true, cut_after: None }]);
    let dir = scratch_dir("pipeline");
    let raw = dir.join("tiny.pt");
    fetch(&server.url(), Some(&sha), &raw, 2, &mut Silent).unwrap();
    server.ranges();
    let out = dir.join("tiny.safetensors");
    let report = clip_handid::clip::weights::convert_to_safetensors(&raw, &out, &Default::default()).unwrap();
    assert_eq!(report.tensors, 63);
    let config = clip_handid::clip::ClipConfig::from_json_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/weights/vit_ts.config.json"),
    )
    .unwrap();
    clip_handid::clip::Clip::<burn::backend::Flex>::from_safetensors_with_config(&out, &config, &Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn one_call_fetches_converts_and_reuses_a_model_of_a_manifest() {
    // `weights::fetch::fetch` (what `handid fetch` calls) on a tiny TorchScript archive served
    // locally and listed in a manifest of its own.
    use clip_handid::clip::weights::fetch::{FetchOptions, fetch as fetch_model};
    use clip_handid::clip::weights::manifest::Manifest;
    let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/weights/vit_ts_fp16.pt");
    let body = std::fs::read(&archive).unwrap();
    let sha = sha256_file(&archive).unwrap();
    let mut server = Server::start(body.clone(), vec![Reply::Body { range: true, cut_after: None }]);
    // Manifests only list https addresses; the parsed entry is pointed at the local server.
    let mut manifest = Manifest::parse(&format!(
        r#"schema = 1

[[model]]
name = "ViT-B/16"
aliases = []
architecture = "ViT-B/16"
default_source = "local"

[[model.source]]
id = "local"
url = "https://example.invalid/tiny.pt"
file = "tiny.pt"
format = "torchscript"
naming = "openai"
dtype = "f16"
sha256 = "{sha}"
size = {}
license = "test fixture"
note = "a tiny archive, not the real model"
"#,
        body.len()
    ))
    .unwrap();
    manifest.models[0].sources[0].url = server.url();
    let dir = scratch_dir("fetch-one-call");
    // The tiny archive is not the ViT-B/16 architecture: the load check is off.
    let options = FetchOptions { dir: Some(dir.clone()), check: false, ..FetchOptions::default() };
    let device = Default::default();
    let fetched = fetch_model::<burn::backend::Flex>(&manifest, "vit-b-16", &options, &device, &mut Silent).unwrap();
    server.ranges();
    assert_eq!(fetched.download.path, dir.join("tiny.pt"));
    assert!(fetched.download.verified && !fetched.download.already_present);
    assert_eq!(fetched.ready, dir.join("ViT-B-16.safetensors"));
    assert_eq!(fetched.conversion.as_ref().map(|r| r.tensors), Some(63));
    assert!(fetched.checked.is_none());
    // Run again: the verified file and the converted one are reused, nothing is downloaded.
    let again = fetch_model::<burn::backend::Flex>(&manifest, "ViT-B/16", &options, &device, &mut Silent).unwrap();
    assert!(again.download.already_present && again.conversion.is_none());
    // Checked, the tiny archive is refused as not the architecture it is listed as.
    let checked = FetchOptions { check: true, ..options };
    let err = fetch_model::<burn::backend::Flex>(&manifest, "ViT-B/16", &checked, &device, &mut Silent).unwrap_err();
    assert!(err.contains("ViT-B-16.safetensors"), "{err}");
}
