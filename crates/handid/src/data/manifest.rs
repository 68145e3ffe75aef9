//! Split manifests: a drawn split written as JSON, so that any result can be traced to its exact
//! split and a split can be reloaded instead of drawn again.
//!
//! ```json
//! {
//!   "format": "clip-handid-splits/1",
//!   "dataset": "11k",
//!   "seed": 42,
//!   "subsets": [
//!     {
//!       "name": "dorsal_right",
//!       "train": [
//!         {"path":"Hands/Hand_0000002.jpg","identity":"dorsal_right/0000000"}
//!       ],
//!       "val": [...],
//!       "runs": [
//!         {
//!           "gallery": [...],
//!           "combined_gallery": [...],
//!           "query": [...]
//!         }
//!       ]
//!     }
//!   ]
//! }
//! ```
//! Paths are relative to the dataset root and `/`-separated; identities are `group/id`
//! ([`Identity`](super::Identity)); `combined_gallery` is absent where there is none (HD,
//! folders), `train_fraction` is present for folder datasets only. The same split always
//! serialises to the same bytes.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::DataError;
use super::split::{Entry, SubsetSplit, SubsetSummary};

/// The value of the manifest's `format` field this version writes and reads.
pub const MANIFEST_FORMAT: &str = "clip-handid-splits/1";

/// How many missing files a [`DataError::ManifestMissingFiles`] lists.
const MISSING_EXAMPLES: usize = 5;

/// The datasets a manifest can be written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DatasetKind {
    /// 11k Hands (`11k`).
    #[serde(rename = "11k")]
    Hands11k,
    /// PolyU hand dorsal, HD (`hd`).
    #[serde(rename = "hd")]
    PolyuHd,
    /// A folder-per-identity dataset (`folders`).
    #[serde(rename = "folders")]
    Folders,
}

impl DatasetKind {
    /// The name used in manifests and on the command line: `11k`, `hd` or `folders`.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Hands11k => "11k",
            DatasetKind::PolyuHd => "hd",
            DatasetKind::Folders => "folders",
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DatasetKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "11k" => Ok(DatasetKind::Hands11k),
            "hd" => Ok(DatasetKind::PolyuHd),
            "folders" | "folder" => Ok(DatasetKind::Folders),
            _ => Err(format!("unknown dataset {s:?} (expected 11k, hd or folder)")),
        }
    }
}

/// A drawn split of a dataset: what [`Hands11k::split`](super::Hands11k::split),
/// [`PolyuHd::split`](super::PolyuHd::split) and [`FolderDataset::split`](super::FolderDataset::split)
/// return, and what is saved and loaded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitManifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// The dataset the split was drawn from.
    pub dataset: DatasetKind,
    /// The seed of the draws.
    pub seed: u64,
    /// Folder datasets: the fraction of identities drawn for training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_fraction: Option<f64>,
    /// The subsets (11k: dorsal_right, dorsal_left, palmar_right, palmar_left; HD: hd;
    /// folders: folders).
    pub subsets: Vec<SubsetSplit>,
}

impl SplitManifest {
    /// A manifest of the current format.
    pub fn new(dataset: DatasetKind, seed: u64, train_fraction: Option<f64>, subsets: Vec<SubsetSplit>) -> Self {
        SplitManifest { format: MANIFEST_FORMAT.to_string(), dataset, seed, train_fraction, subsets }
    }

    /// The subset of that name.
    pub fn subset(&self, name: &str) -> Option<&SubsetSplit> {
        self.subsets.iter().find(|s| s.name == name)
    }

    /// The counts of every subset.
    pub fn summaries(&self) -> Vec<SubsetSummary> {
        self.subsets.iter().map(SubsetSplit::summary).collect()
    }

    /// The manifest as JSON, ending in a newline: indented, with one entry per line (so that
    /// `grep` and `diff` show whole entries). Deterministic: the same split gives the same bytes.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = String::with_capacity(64 + 64 * self.entries().count());
        out.push_str("{\n");
        out.push_str(&format!("  \"format\": {},\n", json(&self.format)));
        out.push_str(&format!("  \"dataset\": {},\n", json(&self.dataset)));
        out.push_str(&format!("  \"seed\": {},\n", self.seed));
        if let Some(f) = self.train_fraction {
            out.push_str(&format!("  \"train_fraction\": {},\n", json(&f)));
        }
        out.push_str("  \"subsets\": [");
        for (i, subset) in self.subsets.iter().enumerate() {
            out.push_str(if i == 0 { "\n    {\n" } else { ",\n    {\n" });
            out.push_str(&format!("      \"name\": {},\n", json(&subset.name)));
            write_entries(&mut out, 6, "train", &subset.train);
            out.push_str(",\n");
            write_entries(&mut out, 6, "val", &subset.val);
            out.push_str(",\n      \"runs\": [");
            for (r, run) in subset.runs.iter().enumerate() {
                out.push_str(if r == 0 { "\n        {\n" } else { ",\n        {\n" });
                write_entries(&mut out, 10, "gallery", &run.gallery);
                if !run.combined_gallery.is_empty() {
                    out.push_str(",\n");
                    write_entries(&mut out, 10, "combined_gallery", &run.combined_gallery);
                }
                out.push_str(",\n");
                write_entries(&mut out, 10, "query", &run.query);
                out.push_str("\n        }");
            }
            out.push_str(if subset.runs.is_empty() { "]\n    }" } else { "\n      ]\n    }" });
        }
        out.push_str(if self.subsets.is_empty() { "]\n}\n" } else { "\n  ]\n}\n" });
        out.into_bytes()
    }

    /// Writes the manifest to `path` atomically: to a temporary file in the same folder, which
    /// is then renamed over `path`.
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        if let Some(f) = self.train_fraction.filter(|f| !f.is_finite()) {
            return Err(DataError::InvalidOption(format!(
                "train fraction {f} cannot be written to {}",
                path.display()
            )));
        }
        let file_name = path.file_name().ok_or_else(|| DataError::layout(path, "not a file path"))?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = dir.join(tmp_name);
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&self.to_json())?;
            file.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(DataError::io(&tmp, "write", e));
        }
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            DataError::io(path, "replace", e)
        })
    }

    /// Reads and parses a manifest without checking it against a dataset.
    pub fn read(path: &Path) -> Result<Self, DataError> {
        let bytes = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DataError::MissingPath { path: path.to_path_buf(), what: "split manifest" },
            _ => DataError::io(path, "read", e),
        })?;
        let manifest: SplitManifest = serde_json::from_slice(&bytes).map_err(|e| DataError::BadManifest {
            path: path.to_path_buf(),
            message: format!("not a valid split manifest: {e}"),
        })?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(DataError::BadManifest {
                path: path.to_path_buf(),
                message: format!("format {:?}, this version reads {MANIFEST_FORMAT:?}", manifest.format),
            });
        }
        Ok(manifest)
    }

    /// Reads a manifest written for `expected` and checks that every file it names exists
    /// under `root`.
    pub fn load(path: &Path, root: &Path, expected: DatasetKind) -> Result<Self, DataError> {
        let manifest = Self::read(path)?;
        if manifest.dataset != expected {
            return Err(DataError::WrongDataset { path: path.to_path_buf(), expected, found: manifest.dataset });
        }
        manifest.check_files(root, path)?;
        Ok(manifest)
    }

    /// Every entry, in manifest order (subsets, then train, val and each run's gallery,
    /// combined gallery and queries).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.subsets.iter().flat_map(|s| {
            s.train
                .iter()
                .chain(&s.val)
                .chain(s.runs.iter().flat_map(|r| r.gallery.iter().chain(&r.combined_gallery).chain(&r.query)))
        })
    }

    /// Checks that every path is relative, stays inside the root and names an existing file
    /// under `root`. `manifest_path` is only used in error messages.
    pub fn check_files(&self, root: &Path, manifest_path: &Path) -> Result<(), DataError> {
        if !root.is_dir() {
            return Err(DataError::MissingRoot { path: root.to_path_buf() });
        }
        let mut seen = BTreeSet::new();
        let mut missing = Vec::new();
        let mut count = 0;
        for entry in self.entries() {
            if !seen.insert(entry.path.as_str()) {
                continue;
            }
            if !is_safe_relative(&entry.path) {
                return Err(DataError::BadManifest {
                    path: manifest_path.to_path_buf(),
                    message: format!("entry path {:?} is not a relative path inside the dataset root", entry.path),
                });
            }
            if !entry.full_path(root).is_file() {
                count += 1;
                if missing.len() < MISSING_EXAMPLES {
                    missing.push(entry.path.clone());
                }
            }
        }
        if count > 0 {
            return Err(DataError::ManifestMissingFiles {
                path: manifest_path.to_path_buf(),
                root: root.to_path_buf(),
                count,
                examples: missing,
            });
        }
        Ok(())
    }
}

/// A value as compact JSON. The values written here (strings, numbers, the dataset name,
/// entries) always serialise; `null` would only stand in for a non-finite float.
fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

/// Writes `"key": [` and the entries, one per line, at `indent` spaces, without a trailing comma.
fn write_entries(out: &mut String, indent: usize, key: &str, entries: &[Entry]) {
    let pad = " ".repeat(indent);
    out.push_str(&format!("{pad}\"{key}\": ["));
    for (i, entry) in entries.iter().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        out.push_str(&format!("{pad}  {}", json(entry)));
    }
    if entries.is_empty() {
        out.push(']');
    } else {
        out.push_str(&format!("\n{pad}]"));
    }
}

/// A non-empty `/`-separated relative path without `.`, `..` or empty components and without a
/// drive prefix (`C:`); on Windows, also without backslashes (a separator there).
fn is_safe_relative(path: &str) -> bool {
    let drive = path.split('/').next().is_some_and(|first| first.len() == 2 && first.ends_with(':'));
    let windows_separator = cfg!(windows) && path.contains('\\');
    let components_ok = path.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
    !path.is_empty() && !drive && !windows_separator && components_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::split::{Identity, RunSplit};
    use crate::data::testutil::TempDir;

    fn tiny_manifest() -> SplitManifest {
        let e = |p: &str, id: &str| Entry::new(p, Identity::new("folders", id));
        let subset = SubsetSplit {
            name: "folders".into(),
            train: vec![e("a/1.jpg", "a")],
            val: vec![e("a/2.jpg", "a")],
            runs: vec![RunSplit {
                gallery: vec![e("b/1.jpg", "b")],
                combined_gallery: vec![],
                query: vec![e("b/2.jpg", "b")],
            }],
        };
        SplitManifest::new(DatasetKind::Folders, 9, Some(0.5), vec![subset])
    }

    #[test]
    fn dataset_kind_names() {
        for kind in [DatasetKind::Hands11k, DatasetKind::PolyuHd, DatasetKind::Folders] {
            assert_eq!(kind.name().parse::<DatasetKind>().unwrap(), kind);
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{kind}\""));
        }
        assert!("11K".parse::<DatasetKind>().is_err());
    }

    #[test]
    fn save_load_round_trip_and_errors() {
        let dir = TempDir::new("manifest");
        let root = dir.path().join("root");
        for p in ["a/1.jpg", "a/2.jpg", "b/1.jpg", "b/2.jpg"] {
            let full = root.join(p);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, b"x").unwrap();
        }
        let manifest = tiny_manifest();
        let out = dir.path().join("splits.json");
        manifest.save(&out).unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 2, "no temporary file left: {leftovers:?}");
        let loaded = SplitManifest::load(&out, &root, DatasetKind::Folders).unwrap();
        assert_eq!(loaded, manifest);
        assert_eq!(std::fs::read(&out).unwrap(), loaded.to_json());

        let err = SplitManifest::load(&out, &root, DatasetKind::PolyuHd).unwrap_err();
        assert!(matches!(err, DataError::WrongDataset { .. }), "{err}");
        assert!(err.to_string().contains("splits.json") && err.to_string().contains("folders"), "{err}");

        std::fs::remove_file(root.join("b/2.jpg")).unwrap();
        let err = SplitManifest::load(&out, &root, DatasetKind::Folders).unwrap_err();
        assert!(matches!(err, DataError::ManifestMissingFiles { count: 1, .. }), "{err}");
        assert!(err.to_string().contains("b/2.jpg"), "{err}");

        let err = SplitManifest::load(&out, &dir.path().join("nope"), DatasetKind::Folders).unwrap_err();
        assert!(matches!(err, DataError::MissingRoot { .. }), "{err}");

        let err = SplitManifest::read(&dir.path().join("absent.json")).unwrap_err();
        assert!(matches!(err, DataError::MissingPath { .. }), "{err}");

        std::fs::write(&out, b"{\"format\": 3").unwrap();
        let err = SplitManifest::read(&out).unwrap_err();
        assert!(matches!(err, DataError::BadManifest { .. }) && err.to_string().contains("splits.json"), "{err}");

        let mut other = manifest.clone();
        other.format = "something-else/7".into();
        std::fs::write(&out, other.to_json()).unwrap();
        assert!(matches!(SplitManifest::read(&out), Err(DataError::BadManifest { .. })));

        let mut escaping = manifest.clone();
        escaping.subsets[0].train[0].path = "../outside.jpg".into();
        std::fs::write(&out, escaping.to_json()).unwrap();
        let err = SplitManifest::load(&out, &root, DatasetKind::Folders).unwrap_err();
        assert!(matches!(err, DataError::BadManifest { .. }), "{err}");
    }

    #[test]
    fn written_json_equals_serde_json() {
        let mut manifests = vec![tiny_manifest(), SplitManifest::new(DatasetKind::Hands11k, 0, None, vec![])];
        let mut with_combined = tiny_manifest();
        with_combined.train_fraction = None;
        with_combined.subsets[0].runs[0].combined_gallery = with_combined.subsets[0].runs[0].gallery.clone();
        with_combined.subsets.push(SubsetSplit { name: "empty".into(), train: vec![], val: vec![], runs: vec![] });
        let first_run = with_combined.subsets[0].runs[0].clone();
        with_combined.subsets[0].runs.push(first_run);
        manifests.push(with_combined);
        let mut odd = tiny_manifest();
        odd.subsets[0].train[0].path = "quote\"back\\slash\u{e9}\n.jpg".into();
        odd.seed = u64::MAX;
        manifests.push(odd);
        for m in manifests {
            let bytes = m.to_json();
            let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(value, serde_json::to_value(&m).unwrap());
            assert_eq!(serde_json::from_slice::<SplitManifest>(&bytes).unwrap(), m);
            assert!(bytes.ends_with(b"}\n"));
        }
        let text = String::from_utf8(tiny_manifest().to_json()).unwrap();
        assert!(text.contains("\n        {\"path\":\"a/1.jpg\",\"identity\":\"folders/a\"}\n"), "{text}");
    }

    #[test]
    fn safe_relative_paths() {
        assert!(is_safe_relative("Hands/Hand_0000002.jpg"));
        assert!(is_safe_relative("person/12:30:01.jpg"));
        for bad in ["", "/abs.jpg", "a//b", "./a", "a/../b", "C:/x", "c:", "a/"] {
            assert!(!is_safe_relative(bad), "{bad}");
        }
    }
}
