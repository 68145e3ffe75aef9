//! The weights manifest (`crates/clip/weights-manifest.toml`, embedded here at build
//! time): for each published model, where its weights are, in which format and naming, and how
//! to check them (SHA-256 and size, or an explicit "unknown").

use serde::Deserialize;

use crate::config::ClipConfig;

/// The manifest shipped with this crate.
pub const EMBEDDED: &str = include_str!("../../weights-manifest.toml");

/// The parsed manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The models, in file order.
    pub models: Vec<ModelEntry>,
}

/// One model and where its weights are published.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    /// OpenAI's name (`ViT-B/16`).
    pub name: String,
    /// Other accepted spellings (`ViT-B-16`).
    pub aliases: Vec<String>,
    /// The architecture, as a [`ClipConfig::preset`] name.
    pub architecture: String,
    /// The `id` of the source fetched by default.
    pub default_source: String,
    /// Where the weights are.
    pub sources: Vec<Source>,
}

/// One downloadable file holding a model's weights.
#[derive(Debug, Clone)]
pub struct Source {
    /// Short name (`openai`, `open_clip`, `hf`).
    pub id: String,
    /// Download address.
    pub url: String,
    /// File name to store it under.
    pub file: String,
    /// Storage format.
    pub format: SourceFormat,
    /// Tensor naming.
    pub naming: super::Naming,
    /// What the tensors are stored as (free text, or "unknown").
    pub dtype: String,
    /// Lower-case hex SHA-256, if known.
    pub sha256: Option<String>,
    /// Size in bytes, if known.
    pub size: Option<u64>,
    /// License as stated by the publisher.
    pub license: String,
    /// Anything else a user must know.
    pub note: String,
}

/// How a source file stores its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// A TorchScript archive (converted to safetensors after download).
    TorchScript,
    /// A safetensors file.
    Safetensors,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    schema: u32,
    model: Vec<RawModel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    architecture: String,
    default_source: String,
    source: Vec<RawSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    id: String,
    url: String,
    file: String,
    format: String,
    naming: String,
    dtype: String,
    sha256: String,
    size: toml::Value,
    license: String,
    #[serde(default)]
    note: String,
}

/// Normalises a model name for lookup: case, `/` vs `-`, and `_` are not significant.
fn normalise(name: &str) -> String {
    name.to_ascii_lowercase().replace(['/', '_'], "-")
}

impl Manifest {
    /// The manifest embedded in this crate.
    pub fn embedded() -> Result<Self, String> {
        Self::parse(EMBEDDED)
    }

    /// Parses and checks a manifest: every field present, SHA-256 values 64 lower-case hex
    /// digits or "unknown", sizes positive integers or "unknown", architectures known presets,
    /// source ids unique per model, names and aliases unique across models, the default source
    /// present, and an OpenAI download URL's hex path segment equal to its SHA-256.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| format!("weights manifest: {e}"))?;
        if raw.schema != 1 {
            return Err(format!("weights manifest: schema {} is not supported (expected 1)", raw.schema));
        }
        let mut models = Vec::new();
        let mut seen_names: Vec<String> = Vec::new();
        for m in raw.model {
            let at = |what: String| format!("weights manifest, model {}: {what}", m.name);
            ClipConfig::preset(&m.architecture).map_err(|e| at(e.to_string()))?;
            for name in std::iter::once(&m.name).chain(&m.aliases) {
                let key = normalise(name);
                if seen_names.contains(&key) {
                    return Err(at(format!("the name `{name}` is used twice")));
                }
                seen_names.push(key);
            }
            let mut sources = Vec::new();
            for s in m.source {
                let at = |what: String| at(format!("source {}: {what}", s.id));
                if sources.iter().any(|x: &Source| x.id == s.id) {
                    return Err(at("duplicate source id".into()));
                }
                if !s.url.starts_with("https://") {
                    return Err(at(format!("url `{}` is not https", s.url)));
                }
                if s.file.is_empty() || s.file.contains(['/', '\\']) || s.file.starts_with('.') {
                    return Err(at(format!("file `{}` is not a plain file name", s.file)));
                }
                let format = match s.format.as_str() {
                    "torchscript" => SourceFormat::TorchScript,
                    "safetensors" => SourceFormat::Safetensors,
                    other => return Err(at(format!("format `{other}` (expected torchscript or safetensors)"))),
                };
                let naming = match s.naming.as_str() {
                    "openai" => super::Naming::OpenAi,
                    "hf-transformers" => super::Naming::HfTransformers,
                    other => return Err(at(format!("naming `{other}` (expected openai or hf-transformers)"))),
                };
                let sha256 = match s.sha256.as_str() {
                    "unknown" => None,
                    h if h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => {
                        Some(h.to_string())
                    }
                    h => return Err(at(format!("sha256 `{h}` is neither 64 lower-case hex digits nor \"unknown\""))),
                };
                let size = match &s.size {
                    toml::Value::Integer(n) if *n > 0 => Some(*n as u64),
                    toml::Value::String(u) if u == "unknown" => None,
                    other => return Err(at(format!("size `{other}` is neither a positive integer nor \"unknown\""))),
                };
                if let (Some(hash), Some(segment)) =
                    (&sha256, s.url.strip_prefix("https://openaipublic.azureedge.net/clip/models/"))
                    && segment.split('/').next() != Some(hash.as_str())
                {
                    return Err(at("the URL's hex path segment is not its sha256".into()));
                }
                if s.license.trim().is_empty() || s.dtype.trim().is_empty() {
                    return Err(at("license and dtype must be stated (\"unknown\" where not known)".into()));
                }
                sources.push(Source {
                    id: s.id,
                    url: s.url,
                    file: s.file,
                    format,
                    naming,
                    dtype: s.dtype,
                    sha256,
                    size,
                    license: s.license,
                    note: s.note,
                });
            }
            if !sources.iter().any(|s| s.id == m.default_source) {
                return Err(at(format!("default source `{}` is not one of its sources", m.default_source)));
            }
            models.push(ModelEntry {
                name: m.name,
                aliases: m.aliases,
                architecture: m.architecture,
                default_source: m.default_source,
                sources,
            });
        }
        Ok(Self { models })
    }

    /// A model by name or alias (case, `/` vs `-` and `_` not significant).
    pub fn model(&self, name: &str) -> Result<&ModelEntry, String> {
        let key = normalise(name);
        self.models.iter().find(|m| std::iter::once(&m.name).chain(&m.aliases).any(|n| normalise(n) == key)).ok_or_else(
            || {
                let known: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
                format!("unknown model `{name}`; the manifest has: {}", known.join(", "))
            },
        )
    }
}

impl ModelEntry {
    /// A source by id, or the default one.
    pub fn source(&self, id: Option<&str>) -> Result<&Source, String> {
        let id = id.unwrap_or(&self.default_source);
        self.sources.iter().find(|s| s.id == id).ok_or_else(|| {
            let known: Vec<&str> = self.sources.iter().map(|s| s.id.as_str()).collect();
            format!("model {} has no source `{id}`; its sources: {}", self.name, known.join(", "))
        })
    }

    /// The file name of the converted, OpenAI-named safetensors (`ViT-B/16` -> `ViT-B-16.safetensors`).
    pub fn safetensors_file(&self) -> String {
        format!("{}.safetensors", self.name.replace('/', "-"))
    }

    /// The converted file's name for `source`: [`safetensors_file`](Self::safetensors_file) for
    /// the default source, with the source's id before the extension for the others
    /// (`ViT-B-16.hf.safetensors`).
    pub fn output_file(&self, source: &Source) -> String {
        let plain = self.safetensors_file();
        if source.id == self.default_source {
            plain
        } else {
            format!("{}.{}.safetensors", plain.trim_end_matches(".safetensors"), source.id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_manifest_parses_and_is_consistent() {
        let manifest = Manifest::embedded().unwrap_or_else(|e| panic!("{e}"));
        for required in ["RN50", "ViT-B/16"] {
            let model = manifest.model(required).unwrap();
            let openai = model.source(Some("openai")).unwrap();
            assert_eq!(openai.format, SourceFormat::TorchScript);
            assert!(openai.sha256.is_some() && openai.size.is_some(), "{required}");
            assert!(model.source(Some("open_clip")).is_ok(), "{required}");
        }
        // the published download addresses
        let rn50 = manifest.model("rn50").unwrap().source(None).unwrap();
        assert_eq!(rn50.sha256.as_deref(), Some("afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762"));
        let b16 = manifest.model("vit-b-16").unwrap();
        assert_eq!(
            b16.source(None).unwrap().sha256.as_deref(),
            Some("5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f")
        );
        assert_eq!(b16.source(Some("hf")).unwrap().naming, crate::weights::Naming::HfTransformers);
        assert_eq!(b16.safetensors_file(), "ViT-B-16.safetensors");
        for model in &manifest.models {
            let config = ClipConfig::preset(&model.architecture).unwrap();
            assert_eq!(ClipConfig::preset(&model.name).unwrap(), config, "{}", model.name);
            for s in &model.sources {
                let openai_url = s.url.contains("openaipublic");
                assert_eq!(openai_url, s.format == SourceFormat::TorchScript, "{}", s.url);
                assert_eq!(s.naming == crate::weights::Naming::HfTransformers, s.id == "hf", "{}", s.url);
                // transformers only has ViT CLIP models
                if s.id == "hf" {
                    assert!(matches!(config.vision, crate::config::VisionConfig::Vit(_)));
                }
            }
        }
        assert!(manifest.model("RN51").unwrap_err().contains("RN50"));
    }

    #[test]
    fn inconsistent_manifests_are_refused() {
        let good = Manifest::embedded().unwrap();
        assert!(!good.models.is_empty());
        let wrong_hash = EMBEDDED.replacen(
            "sha256 = \"afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762\"",
            "sha256 = \"bfeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762\"",
            1,
        );
        assert!(Manifest::parse(&wrong_hash).unwrap_err().contains("hex path segment"));
        let missing_size = EMBEDDED.replacen("size = 255827503\n", "", 1);
        assert!(Manifest::parse(&missing_size).unwrap_err().contains("size"));
        // an unknown checksum must be spelled out, not left out
        let no_hash = EMBEDDED.replacen("sha256 = \"unknown\"\n", "", 1);
        assert!(Manifest::parse(&no_hash).unwrap_err().contains("sha256"));
        let bad_hash = EMBEDDED.replacen("sha256 = \"unknown\"", "sha256 = \"abc\"", 1);
        assert!(Manifest::parse(&bad_hash).unwrap_err().contains("neither 64"));
        let dup = EMBEDDED.replacen("aliases = [\"vitb32\"]", "aliases = [\"ViT-B-16\"]", 1);
        assert!(Manifest::parse(&dup).unwrap_err().contains("used twice"));
    }
}
