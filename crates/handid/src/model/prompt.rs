//! The prompt "A photo of a S* hand": token ids with a placeholder whose embedding is replaced
//! by the pseudo-token of each image.

use burn::prelude::*;
use clip_burn::text::TextTransformer;
use clip_burn::tokenizer::{CONTEXT_LENGTH, ClipTokenizer};

use super::ModelError;

/// The prompt text; `sks` is the placeholder word (a single rare BPE token, id 48136).
pub const PROMPT: &str = "A photo of a sks hand";
/// The placeholder word.
pub const PLACEHOLDER: &str = "sks";

/// Token ids of the prompt and where the placeholder and the end-of-text token sit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// `[CONTEXT_LENGTH]` token ids.
    pub ids: Vec<u32>,
    /// Index of the placeholder token (5 for [`PROMPT`]).
    pub placeholder: usize,
    /// Index of the end-of-text token, whose output is the text feature (7 for [`PROMPT`]).
    pub end: usize,
}

impl Prompt {
    /// Tokenizes `text`, which must contain `placeholder` as exactly one BPE token.
    pub fn new(tokenizer: &ClipTokenizer, text: &str, placeholder: &str) -> Result<Self, ModelError> {
        let ids = tokenizer.tokenize(text, CONTEXT_LENGTH)?;
        let placeholder_ids = tokenizer.encode(placeholder)?;
        let end = ids.iter().enumerate().max_by_key(|(_, id)| **id).map(|(i, _)| i).unwrap_or(0);
        let position = match placeholder_ids.as_slice() {
            [id] => ids.iter().position(|t| t == id),
            _ => None,
        };
        let placeholder = position.ok_or_else(|| {
            ModelError::InvalidPrompt(format!("`{text}` must contain `{placeholder}` as exactly one token"))
        })?;
        Ok(Self { ids, placeholder, end })
    }

    /// The paper's prompt, "A photo of a sks hand".
    pub fn hand(tokenizer: &ClipTokenizer) -> Result<Self, ModelError> {
        Self::new(tokenizer, PROMPT, PLACEHOLDER)
    }

    /// Prompt token embeddings `[1, context, width]` from the (frozen) text encoder.
    pub fn embeddings<B: Backend>(&self, text: &TextTransformer<B>, device: &B::Device) -> Tensor<B, 3> {
        let ids: Vec<i64> = self.ids.iter().map(|&id| id as i64).collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, self.ids.len()]), device);
        text.embed_tokens(ids)
    }

    /// Replaces the placeholder embedding by `tokens` `[batch, width]`:
    /// `prompt` `[1, context, width]` -> `[batch, context, width]`.
    pub fn substitute<B: Backend>(&self, prompt: Tensor<B, 3>, tokens: Tensor<B, 2>) -> Tensor<B, 3> {
        let [batch, width] = tokens.dims();
        let context = prompt.dims()[1];
        let before = prompt.clone().narrow(1, 0, self.placeholder).expand([batch, self.placeholder, width]);
        let after_len = context - self.placeholder - 1;
        let after = prompt.narrow(1, self.placeholder + 1, after_len).expand([batch, after_len, width]);
        Tensor::cat(vec![before, tokens.unsqueeze_dim(1), after], 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn the_hand_prompt_has_the_placeholder_at_5_and_the_end_at_7() {
        let prompt = Prompt::hand(&ClipTokenizer::new().unwrap()).unwrap();
        assert_eq!(&prompt.ids[..9], &[49406, 320, 1125, 539, 320, 48136, 2463, 49407, 0]);
        assert_eq!((prompt.placeholder, prompt.end), (5, 7));
        let err = Prompt::new(&ClipTokenizer::new().unwrap(), "A photo of a hand", PLACEHOLDER).unwrap_err();
        assert!(err.to_string().contains("must contain `sks`"), "{err}");
    }

    #[test]
    fn substitution_replaces_only_the_placeholder_row() {
        let device = Default::default();
        let prompt = Prompt { ids: vec![0; 6], placeholder: 2, end: 4 };
        let base =
            Tensor::<Flex, 3>::from_data(TensorData::new((0..18).map(|v| v as f32).collect(), [1, 6, 3]), &device);
        let tokens = Tensor::<Flex, 2>::from_data(TensorData::new(vec![-1.0f32; 6], [2, 3]), &device);
        let out: Vec<f32> = prompt.substitute(base, tokens).into_data().to_vec().unwrap();
        let row = |b: usize, t: usize| out[(b * 6 + t) * 3..(b * 6 + t) * 3 + 3].to_vec();
        for b in 0..2 {
            assert_eq!(row(b, 2), [-1.0; 3]);
            assert_eq!(row(b, 1), [3.0, 4.0, 5.0]);
            assert_eq!(row(b, 3), [9.0, 10.0, 11.0]);
        }
    }
}
