//! One call from a model's name to weights ready to load: look the model up in the manifest,
//! download and verify its file ([`download`]), convert it to OpenAI-named safetensors when it
//! is not already, and check that the result loads as that model.

use std::path::{Path, PathBuf};

use burn::prelude::*;

use super::download::{DownloadError, DownloadOptions, Downloaded, Progress, Target, default_weights_dir, download};
use super::manifest::{Manifest, ModelEntry, Source, SourceFormat};
use super::{ConversionReport, ConvertOptions, Naming, Precision, convert_to_safetensors};
use crate::{Clip, ClipConfig};

/// Settings of [`fetch`].
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Directory of the downloaded and converted files; [`default_weights_dir`] when `None`.
    pub dir: Option<PathBuf>,
    /// The manifest source to use; the model's default (OpenAI's archive) when `None`.
    pub source: Option<String>,
    /// Accept a source whose SHA-256 the manifest does not record.
    pub allow_unverified: bool,
    /// Dtypes of the converted file.
    pub precision: Precision,
    /// Load the result as CLIP and check its architecture.
    pub check: bool,
    /// Network settings.
    pub network: DownloadOptions,
}

impl Default for FetchOptions {
    /// The default source into the default directory, verified, stored dtypes kept, checked.
    fn default() -> Self {
        Self {
            dir: None,
            source: None,
            allow_unverified: false,
            precision: Precision::Keep,
            check: true,
            network: DownloadOptions::default(),
        }
    }
}

/// What [`fetch`] did.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The model.
    pub model: ModelEntry,
    /// The source its file came from.
    pub source: Source,
    /// The downloaded (or already present) file, verified.
    pub download: Downloaded,
    /// The OpenAI-named safetensors file to load.
    pub ready: PathBuf,
    /// The conversion, when one ran (`None`: the file was already safetensors in OpenAI naming,
    /// or the converted file was already there).
    pub conversion: Option<ConversionReport>,
    /// The architecture the result loaded as, when checked.
    pub checked: Option<ClipConfig>,
}

/// What to do without network: the file to bring and where to put it.
pub fn offline_help(source: &Source, path: &Path) -> String {
    let sha = match &source.sha256 {
        Some(sha) => format!("SHA-256 {sha}"),
        None => "no SHA-256 is recorded for it".to_string(),
    };
    let size = source.size.map_or_else(String::new, |s| format!(", {s} bytes"));
    format!(
        "to install it by hand, download {} ({sha}{size}) on a machine with network, put it at {} and run this \
         again: the file will be verified and converted",
        source.url,
        path.display()
    )
}

/// The file of `source` for `model` under `dir` and the manifest entries, before any download
/// (to tell the user what is about to happen).
pub fn plan<'m>(
    manifest: &'m Manifest,
    model: &str,
    options: &FetchOptions,
) -> Result<(&'m ModelEntry, &'m Source, PathBuf), String> {
    let entry = manifest.model(model)?;
    let source = entry.source(options.source.as_deref())?;
    if source.sha256.is_none() && !options.allow_unverified {
        return Err(format!(
            "the manifest records no SHA-256 for {} (source `{}` of {}), so the download could not be verified; \
             pass --allow-unverified to accept it (the digest found will be printed), or use the default source",
            source.url, source.id, entry.name
        ));
    }
    let dir = match &options.dir {
        Some(dir) => dir.clone(),
        None => default_weights_dir()?,
    };
    Ok((entry, source, dir))
}

/// Gets the weights of `model` (a name or alias of the manifest) as an OpenAI-named
/// safetensors file: download and verification (resuming a partial file), conversion, and a
/// load check on backend `B` (`device`). Errors say what failed; without network they say
/// which file to bring and where ([`offline_help`]).
pub fn fetch<B: Backend>(
    manifest: &Manifest,
    model: &str,
    options: &FetchOptions,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<Fetched, String> {
    let (entry, source, dir) = plan(manifest, model, options)?;
    let raw = dir.join(&source.file);
    let target = Target { url: &source.url, sha256: source.sha256.as_deref(), dest: &raw };
    let fetched = match download(&target, &options.network, progress) {
        Ok(f) => f,
        Err(e @ DownloadError::Unreachable { .. }) => return Err(format!("{e}; {}", offline_help(source, &raw))),
        Err(e @ DownloadError::Interrupted { .. }) => {
            return Err(format!("{e}; if this keeps failing, {}", offline_help(source, &raw)));
        }
        Err(e) => return Err(e.to_string()),
    };
    let (ready, conversion) = if source.format == SourceFormat::Safetensors && source.naming == Naming::OpenAi {
        (raw.clone(), None)
    } else {
        let out = dir.join(entry.output_file(source));
        if out.exists() {
            (out, None)
        } else {
            let convert = ConvertOptions { precision: options.precision, key: None };
            let report = convert_to_safetensors(&raw, &out, &convert).map_err(|e| e.to_string())?;
            (out, Some(report))
        }
    };
    let checked = if options.check {
        let (_, config) = Clip::<B>::from_file(&ready, device)
            .map_err(|e| format!("{}: does not load as CLIP: {e}", ready.display()))?;
        let expected = ClipConfig::preset(&entry.architecture).map_err(|e| e.to_string())?;
        if config != expected {
            return Err(format!("{} loads, but not as the {} architecture", ready.display(), entry.name));
        }
        Some(config)
    } else {
        None
    };
    Ok(Fetched { model: entry.clone(), source: source.clone(), download: fetched, ready, conversion, checked })
}
