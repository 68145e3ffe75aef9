//! Hugging Face transformers CLIP naming (`CLIPModel`, e.g. `openai/clip-vit-base-patch16`),
//! rewritten to OpenAI's naming with a key map kept as data.
//!
//! Differences from OpenAI's layout, and how the map handles them:
//! - names: `vision_model.encoder.layers.N.layer_norm1` is `visual.transformer.resblocks.N.ln_1`,
//!   `mlp.fc1`/`fc2` are `mlp.c_fc`/`c_proj`, `pre_layrnorm` (sic) is `ln_pre`, ... ([`KeyPattern`]);
//! - attention: separate `q_proj`, `k_proj`, `v_proj` (`[W, W]` and `[W]` each) are packed, in
//!   that order along the first axis, into torch's `in_proj_weight` `[3W, W]` and
//!   `in_proj_bias` `[3W]` ([`PackPattern`]);
//! - projections: `visual_projection.weight` and `text_projection.weight` are `nn.Linear`
//!   weights `[E, W]`; OpenAI's `visual.proj` and `text_projection` are `[W, E]` (`x @ proj`),
//!   so they are transposed;
//! - `*.embeddings.position_ids` (integer buffers some hub files carry) hold no weights and are
//!   dropped.
//!
//! Only the ViT image tower exists in transformers' CLIP. Its activation must be QuickGELU
//! (`hidden_act = "quick_gelu"`, as in OpenAI's converted checkpoints) for this crate's model to
//! reproduce it.

use std::collections::BTreeMap;

use super::raw::RawTensor;

/// A full-name rewrite; `{}` in both spellings stands for a layer index (digits).
#[derive(Debug, Clone)]
pub struct KeyPattern {
    /// Name in the source naming.
    pub from: String,
    /// Name in OpenAI's naming.
    pub to: String,
    /// Transpose the (2-d) tensor.
    pub transpose: bool,
}

/// Three source tensors concatenated along the first axis into one (q, k, v -> in_proj).
#[derive(Debug, Clone)]
pub struct PackPattern {
    /// The parts, in concatenation order; `{}` stands for a layer index.
    pub parts: [String; 3],
    /// Name of the packed tensor in OpenAI's naming.
    pub to: String,
}

/// A complete map from one naming to OpenAI's: every source tensor must match exactly one
/// rewrite, one pack part, or one ignored pattern.
#[derive(Debug, Clone)]
pub struct NamingMap {
    /// One-to-one rewrites.
    pub renames: Vec<KeyPattern>,
    /// Packed tensors.
    pub packs: Vec<PackPattern>,
    /// Source tensors that hold no weights (dropped).
    pub ignored: Vec<String>,
}

/// Whether tensor names are in transformers' CLIP naming.
pub fn is_hf_naming<'a>(mut names: impl Iterator<Item = &'a String>) -> bool {
    names.any(|n| n.starts_with("vision_model.") || n.starts_with("text_model."))
}

/// Matches `name` against a pattern with at most one `{}` (digits); returns the digits.
fn match_pattern<'n>(pattern: &str, name: &'n str) -> Option<&'n str> {
    match pattern.split_once("{}") {
        None => (pattern == name).then_some(""),
        Some((before, after)) => {
            let middle = name.strip_prefix(before)?.strip_suffix(after)?;
            (!middle.is_empty() && middle.bytes().all(|b| b.is_ascii_digit())).then_some(middle)
        }
    }
}

impl NamingMap {
    /// transformers' `CLIPModel` naming (also `CLIPVisionModelWithProjection` /
    /// `CLIPTextModelWithProjection` files, whose tensors are a subset).
    pub fn hf_transformers() -> Self {
        let mut renames = Vec::new();
        let mut rename = |from: &str, to: &str, transpose: bool| {
            renames.push(KeyPattern { from: from.into(), to: to.into(), transpose });
        };
        for (hf, openai) in [("vision_model.", "visual."), ("text_model.", "")] {
            let (from_layer, to_layer) =
                (format!("{hf}encoder.layers.{{}}."), format!("{openai}transformer.resblocks.{{}}."));
            for (a, b) in [
                ("layer_norm1", "ln_1"),
                ("layer_norm2", "ln_2"),
                ("self_attn.out_proj", "attn.out_proj"),
                ("mlp.fc1", "mlp.c_fc"),
                ("mlp.fc2", "mlp.c_proj"),
            ] {
                for p in ["weight", "bias"] {
                    rename(&format!("{from_layer}{a}.{p}"), &format!("{to_layer}{b}.{p}"), false);
                }
            }
        }
        rename("vision_model.embeddings.class_embedding", "visual.class_embedding", false);
        rename("vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight", false);
        rename("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding", false);
        for p in ["weight", "bias"] {
            rename(&format!("vision_model.pre_layrnorm.{p}"), &format!("visual.ln_pre.{p}"), false);
            rename(&format!("vision_model.post_layernorm.{p}"), &format!("visual.ln_post.{p}"), false);
            rename(&format!("text_model.final_layer_norm.{p}"), &format!("ln_final.{p}"), false);
        }
        rename("visual_projection.weight", "visual.proj", true);
        rename("text_model.embeddings.token_embedding.weight", "token_embedding.weight", false);
        rename("text_model.embeddings.position_embedding.weight", "positional_embedding", false);
        rename("text_projection.weight", "text_projection", true);
        rename("logit_scale", "logit_scale", false);

        let mut packs = Vec::new();
        for (hf, to_layer) in
            [("vision_model.", "visual.transformer.resblocks.{}."), ("text_model.", "transformer.resblocks.{}.")]
        {
            for (p, to) in [("weight", "attn.in_proj_weight"), ("bias", "attn.in_proj_bias")] {
                let part = |x: &str| format!("{hf}encoder.layers.{{}}.self_attn.{x}_proj.{p}");
                packs.push(PackPattern { parts: [part("q"), part("k"), part("v")], to: format!("{to_layer}{to}") });
            }
        }
        let ignored =
            vec!["vision_model.embeddings.position_ids".to_string(), "text_model.embeddings.position_ids".to_string()];
        Self { renames, packs, ignored }
    }

    /// Rewrites every tensor into OpenAI's naming. Unknown names, incomplete q/k/v triples and
    /// parts that cannot be packed are errors naming the tensors.
    pub fn apply(&self, tensors: BTreeMap<String, RawTensor>) -> Result<BTreeMap<String, RawTensor>, String> {
        let mut out = BTreeMap::new();
        let mut unknown = Vec::new();
        // (pack index, layer) -> parts found
        let mut partial: BTreeMap<(usize, String), PackParts> = BTreeMap::new();
        'tensors: for (name, tensor) in tensors {
            if self.ignored.iter().any(|p| match_pattern(p, &name).is_some()) {
                continue;
            }
            for r in &self.renames {
                if let Some(index) = match_pattern(&r.from, &name) {
                    let to = r.to.replace("{}", index);
                    let tensor = if r.transpose {
                        tensor
                            .transposed()
                            .ok_or_else(|| format!("`{name}` has shape {:?}, expected 2-d", tensor.shape))?
                    } else {
                        tensor
                    };
                    out.insert(to, tensor);
                    continue 'tensors;
                }
            }
            for (k, pack) in self.packs.iter().enumerate() {
                for (i, part) in pack.parts.iter().enumerate() {
                    if let Some(index) = match_pattern(part, &name).map(str::to_string) {
                        partial.entry((k, index)).or_default()[i] = Some((name, tensor));
                        continue 'tensors;
                    }
                }
            }
            unknown.push(name);
        }
        if !unknown.is_empty() {
            return Err(format!("tensors the Hugging Face CLIP key map does not know: {}", unknown.join(", ")));
        }
        for ((k, index), parts) in partial {
            let pack = &self.packs[k];
            let missing: Vec<String> = pack
                .parts
                .iter()
                .zip(&parts)
                .filter(|(_, p)| p.is_none())
                .map(|(name, _)| name.replace("{}", &index))
                .collect();
            if !missing.is_empty() {
                return Err(format!("incomplete q/k/v projections: missing {}", missing.join(", ")));
            }
            let parts: Vec<(String, RawTensor)> = parts.into_iter().flatten().collect();
            out.insert(pack.to.replace("{}", &index), concat_rows(parts)?);
        }
        Ok(out)
    }
}

/// The q, k, v tensors found so far for one packed tensor, with their source names.
type PackParts = [Option<(String, RawTensor)>; 3];

/// Concatenates tensors along the first axis (converted to f32 when their dtypes differ).
fn concat_rows(parts: Vec<(String, RawTensor)>) -> Result<RawTensor, String> {
    let rest = |t: &RawTensor| t.shape.get(1..).map(<[usize]>::to_vec);
    let first = &parts[0].1;
    for (name, t) in &parts {
        if t.shape.is_empty() || rest(t) != rest(first) {
            return Err(format!(
                "cannot pack `{name}` of shape {:?} with `{}` of shape {:?}",
                t.shape, parts[0].0, first.shape
            ));
        }
    }
    let same_dtype = parts.iter().all(|(_, t)| t.dtype == first.dtype);
    let rows: usize = parts.iter().map(|(_, t)| t.shape[0]).sum();
    let mut shape = first.shape.clone();
    shape[0] = rows;
    let parts: Vec<RawTensor> = parts.into_iter().map(|(_, t)| if same_dtype { t } else { t.into_f32() }).collect();
    let dtype = parts[0].dtype;
    let data: Vec<u8> = parts.into_iter().flat_map(|t| t.data).collect();
    RawTensor::new(dtype, shape, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], start: f32) -> RawTensor {
        let n: usize = shape.iter().product();
        RawTensor::from_f32(shape.to_vec(), &(0..n).map(|i| start + i as f32).collect::<Vec<_>>())
    }

    #[test]
    fn renames_packs_and_transposes() {
        let mut m = BTreeMap::new();
        for (x, start) in [("q", 0.0), ("k", 100.0), ("v", 200.0)] {
            m.insert(format!("vision_model.encoder.layers.11.self_attn.{x}_proj.weight"), t(&[2, 2], start));
        }
        m.insert("visual_projection.weight".into(), t(&[3, 2], 0.0));
        m.insert("text_model.encoder.layers.0.mlp.fc1.bias".into(), t(&[4], 0.0));
        m.insert("text_model.embeddings.position_ids".into(), t(&[1, 8], 0.0));
        let out = NamingMap::hf_transformers().apply(m).unwrap();
        let keys: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "transformer.resblocks.0.mlp.c_fc.bias",
                "visual.proj",
                "visual.transformer.resblocks.11.attn.in_proj_weight"
            ]
        );
        let packed = &out["visual.transformer.resblocks.11.attn.in_proj_weight"];
        assert_eq!(packed.shape, [6, 2]);
        assert_eq!(packed.to_f32_values().unwrap(), [0., 1., 2., 3., 100., 101., 102., 103., 200., 201., 202., 203.]);
        assert_eq!(out["visual.proj"].shape, [2, 3]);
    }

    #[test]
    fn incomplete_and_unknown_tensors_are_named() {
        let mut m = BTreeMap::new();
        m.insert("text_model.encoder.layers.3.self_attn.q_proj.bias".to_string(), t(&[2], 0.0));
        let err = NamingMap::hf_transformers().apply(m).unwrap_err();
        assert!(err.contains("text_model.encoder.layers.3.self_attn.k_proj.bias"), "{err}");
        let mut m = BTreeMap::new();
        m.insert("vision_model.encoder.layers.x.mlp.fc1.bias".to_string(), t(&[2], 0.0));
        let err = NamingMap::hf_transformers().apply(m).unwrap_err();
        assert!(err.contains("does not know: vision_model.encoder.layers.x.mlp.fc1.bias"), "{err}");
    }
}
