//! Key maps from checkpoint tensor names to Burn parameter paths, kept as data.
//!
//! A map is a list of prefix pairs and a list of suffix pairs. A checkpoint key is rewritten by
//! the first matching prefix pair, then by the first matching suffix pair; the reverse rewrite
//! names, in checkpoint terms, a parameter the model expects but the file lacks.

/// One rewrite: checkpoint spelling, Burn spelling, and whether the tensor is a torch
/// `nn.Linear` weight (`[out, in]`) that Burn stores transposed (`[in, out]`).
#[derive(Debug, Clone)]
pub struct Rewrite {
    /// Spelling in the checkpoint.
    pub checkpoint: String,
    /// Spelling in the Burn module tree.
    pub burn: String,
    /// Transpose a 2-d tensor on the way in.
    pub transpose: bool,
}

impl Rewrite {
    fn new(checkpoint: impl Into<String>, burn: impl Into<String>, transpose: bool) -> Self {
        Self { checkpoint: checkpoint.into(), burn: burn.into(), transpose }
    }
}

/// A complete key map for one checkpoint naming scheme.
#[derive(Debug, Clone)]
pub struct KeyMap {
    /// Prefix rewrites, tried in order.
    pub prefixes: Vec<Rewrite>,
    /// Suffix rewrites, tried in order.
    pub suffixes: Vec<Rewrite>,
    /// Checkpoint keys that carry no parameter (bookkeeping buffers, metadata scalars).
    pub ignored_suffixes: Vec<&'static str>,
}

/// torch modules stored as `nn.Linear` in OpenAI CLIP (transposed into Burn's layout).
const LINEAR_MODULES: [&str; 6] = ["out_proj", "c_fc", "c_proj", "q_proj", "k_proj", "v_proj"];
/// LayerNorm / BatchNorm modules (`weight`/`bias` are Burn's `gamma`/`beta`).
const NORM_MODULES: [&str; 8] = ["ln_1", "ln_2", "ln_pre", "ln_post", "ln_final", "bn1", "bn2", "bn3"];
/// Top-level keys of the text tower; Burn keeps them under `text.`.
const TEXT_KEYS: [&str; 5] =
    ["transformer.", "token_embedding.", "positional_embedding", "ln_final.", "text_projection"];

impl KeyMap {
    /// OpenAI's checkpoint naming (`clip/model.py`), also used by open_clip's
    /// `open_clip_model.safetensors` for the OpenAI models.
    pub fn openai() -> Self {
        let mut prefixes = vec![Rewrite::new("visual.", "visual.", false)];
        prefixes.extend(TEXT_KEYS.iter().map(|k| Rewrite::new(*k, format!("text.{k}"), false)));

        let mut suffixes = vec![
            Rewrite::new(".attn.in_proj_weight", ".attn.in_proj.weight", true),
            Rewrite::new(".attn.in_proj_bias", ".attn.in_proj.bias", false),
            // torch.nn.Sequential(-1: AvgPool2d, 0: Conv2d, 1: BatchNorm2d)
            Rewrite::new(".downsample.0.weight", ".downsample.conv.weight", false),
            Rewrite::new(".downsample.1.weight", ".downsample.bn.gamma", false),
            Rewrite::new(".downsample.1.bias", ".downsample.bn.beta", false),
            Rewrite::new(".downsample.1.running_mean", ".downsample.bn.running_mean", false),
            Rewrite::new(".downsample.1.running_var", ".downsample.bn.running_var", false),
        ];
        suffixes
            .extend(LINEAR_MODULES.iter().map(|m| Rewrite::new(format!(".{m}.weight"), format!(".{m}.weight"), true)));
        for norm in NORM_MODULES {
            suffixes.push(Rewrite::new(format!(".{norm}.weight"), format!(".{norm}.gamma"), false));
            suffixes.push(Rewrite::new(format!(".{norm}.bias"), format!(".{norm}.beta"), false));
        }
        // `attn_mask`: open_clip's causal mask, a non-persistent buffer that TorchScript archives
        // of open_clip models list in their state dict; it is derived, not learned.
        let ignored_suffixes =
            vec!["num_batches_tracked", "input_resolution", "context_length", "vocab_size", "attn_mask"];
        Self { prefixes, suffixes, ignored_suffixes }
    }

    /// Whether a checkpoint key holds no model parameter.
    pub fn is_ignored(&self, key: &str) -> bool {
        self.ignored_suffixes.iter().any(|s| key == *s || key.ends_with(&format!(".{s}")))
    }

    /// The Burn path of a checkpoint key and whether to transpose it.
    pub fn to_burn(&self, key: &str) -> (String, bool) {
        let mut path = key.to_string();
        if let Some(r) = self.prefixes.iter().find(|r| key.starts_with(&r.checkpoint)) {
            path = format!("{}{}", r.burn, &key[r.checkpoint.len()..]);
        }
        match self.suffixes.iter().find(|r| path.ends_with(&r.checkpoint)) {
            Some(r) => (format!("{}{}", &path[..path.len() - r.checkpoint.len()], r.burn), r.transpose),
            None => (path, false),
        }
    }

    /// The checkpoint key a Burn path is loaded from (inverse of [`to_burn`](Self::to_burn)).
    pub fn to_checkpoint(&self, path: &str) -> String {
        let mut key = path.to_string();
        if let Some(r) = self.suffixes.iter().find(|r| key.ends_with(&r.burn)) {
            key = format!("{}{}", &key[..key.len() - r.burn.len()], r.checkpoint);
        }
        match self.prefixes.iter().rev().find(|r| key.starts_with(&r.burn)) {
            Some(r) => format!("{}{}", r.checkpoint, &key[r.burn.len()..]),
            None => key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_keys_round_trip() {
        let map = KeyMap::openai();
        for (key, burn, transpose) in [
            (
                "visual.transformer.resblocks.3.attn.in_proj_weight",
                "visual.transformer.resblocks.3.attn.in_proj.weight",
                true,
            ),
            ("visual.layer2.0.downsample.1.running_var", "visual.layer2.0.downsample.bn.running_var", false),
            ("visual.attnpool.c_proj.weight", "visual.attnpool.c_proj.weight", true),
            ("ln_final.weight", "text.ln_final.gamma", false),
            ("transformer.resblocks.0.ln_1.bias", "text.transformer.resblocks.0.ln_1.beta", false),
            ("positional_embedding", "text.positional_embedding", false),
            ("visual.positional_embedding", "visual.positional_embedding", false),
            ("visual.bn1.weight", "visual.bn1.gamma", false),
            ("logit_scale", "logit_scale", false),
        ] {
            assert_eq!(map.to_burn(key), (burn.to_string(), transpose), "{key}");
            assert_eq!(map.to_checkpoint(burn), key, "{burn}");
        }
        assert!(map.is_ignored("visual.layer1.0.bn1.num_batches_tracked"));
        assert!(!map.is_ignored("visual.layer1.0.bn1.weight"));
    }
}
