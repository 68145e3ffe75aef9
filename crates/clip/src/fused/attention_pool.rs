//! The ModifiedResNet's attention pool outside its linears, on flex: the token matrix in one
//! pass, and the attention of the single query.
//!
//! What this replaces (`perf` of `rn50-reid/b8`, where the pool sees a 14 x 14 grid): the tokens
//! `cat([mean, positions]) + positional` went through flex's strided iterator on the calling
//! thread (the `[batch, h w, channels]` view of the map is a transposed one, and the position
//! table a broadcast), and the attention through flex's single-threaded attention over
//! `[batch, heads, tokens, head_dim]` views of the keys and values, transposed again: 9 % of the
//! batch with the second thread idle. Here the tokens are written per image, one task each, with
//! the transposition done row by row of the map; the attention is one task per (image, head),
//! reading the keys and values in place in the linears' `[batch, tokens, channels]` layout.

use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use rayon::prelude::*;

use super::attention::{Rows, attend};
use super::{back, f32s, from_flex, into_flex};
use burn::backend::flex::FlexTensor;

/// The attention pool's tokens `[batch, 1 + h w, channels]` from the feature map `map`
/// `[batch, channels, h, w]` and the position table `positional` `[1 + h w, channels]`: token 0
/// is the map's mean over the grid, token `1 + i` grid position `i` (row-major), each plus its
/// row of the table (open_clip `AttentionPool2d.forward`).
pub fn pool_tokens<B: Backend>(map: Tensor<B, 4>, positional: Tensor<B, 2>) -> Tensor<B, 3> {
    let [batch, channels, h, w] = map.dims();
    let grid = h * w;
    if positional.dims() != [1 + grid, channels] {
        return pool_tokens_generic(map, positional);
    }
    let (map, positional) = match (into_flex(map), into_flex(positional)) {
        (Ok(map), Ok(positional)) => (map, positional),
        (map, positional) => return pool_tokens_generic(back(map), back(positional)),
    };
    let (map, positional) = (super::contiguous(&map), super::contiguous(&positional));
    let (x, pos) = (f32s(&map), f32s(&positional));
    let tokens = 1 + grid;
    let mut y = vec![0.0f32; batch * tokens * channels];
    y.par_chunks_mut(tokens * channels).zip(x.par_chunks(channels * grid)).for_each(|(out, image)| {
        // Row `c` of the map is channel `c` over the grid: its mean goes to token 0, its values
        // down column `c` of tokens 1.. (the 1 + h w rows being written stay in L1 across the
        // consecutive channels that fill them).
        for (c, row) in image.chunks_exact(grid).enumerate() {
            let sum: f32 = row.iter().sum();
            out[c] = sum / grid as f32 + pos[c];
            for (i, &value) in row.iter().enumerate() {
                let t = (1 + i) * channels + c;
                out[t] = value + pos[t];
            }
        }
    });
    from_flex(FlexTensor::from_data(TensorData::new(y, [batch, tokens, channels])))
}

/// [`pool_tokens`] with the generic ops.
fn pool_tokens_generic<B: Backend>(map: Tensor<B, 4>, positional: Tensor<B, 2>) -> Tensor<B, 3> {
    let [batch, channels, h, w] = map.dims();
    let positions = map.reshape([batch, channels, h * w]).swap_dims(1, 2); // [batch, h*w, channels]
    let mean = positions.clone().mean_dim(1); // [batch, 1, channels]
    Tensor::cat(vec![mean, positions], 1) + positional.unsqueeze() // [batch, 1+h*w, channels]
}

/// Multi-head attention of one query per image over all tokens: `query` `[batch, channels]`,
/// `keys` and `values` `[batch, tokens, channels]` with the heads side by side in the channels;
/// returns the merged heads `[batch, channels]`. Scale `1 / sqrt(head_dim)`.
pub fn pool_attention<B: Backend>(
    query: Tensor<B, 2>,
    keys: Tensor<B, 3>,
    values: Tensor<B, 3>,
    heads: usize,
) -> Tensor<B, 2> {
    let [batch, tokens, channels] = keys.dims();
    if query.dims() != [batch, channels] || values.dims() != [batch, tokens, channels] || channels % heads != 0 {
        return pool_attention_generic(query, keys, values, heads);
    }
    let flex = (into_flex(query), into_flex(keys), into_flex(values));
    let (q, k, v) = match flex {
        (Ok(q), Ok(k), Ok(v)) => (super::contiguous(&q), super::contiguous(&k), super::contiguous(&v)),
        (q, k, v) => return pool_attention_generic(back(q), back(k), back(v), heads),
    };
    let (q, k, v) = (f32s(&q), f32s(&k), f32s(&v));
    let head_dim = channels / heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let mut out = vec![0.0f32; batch * channels];
    // One task per (image, head): its `head_dim` slice of the output row.
    out.par_chunks_mut(head_dim).enumerate().for_each_init(Vec::new, |scores: &mut Vec<f32>, (task, out)| {
        let (b, head) = (task / heads, task % heads);
        let offset = head * head_dim;
        let query = &q[b * channels + offset..][..head_dim];
        let keys = Rows { data: &k[b * tokens * channels..][..tokens * channels], stride: channels, offset };
        let values = Rows { data: &v[b * tokens * channels..][..tokens * channels], stride: channels, offset };
        attend(query, keys, values, tokens, scale, scores, out);
    });
    from_flex(FlexTensor::from_data(TensorData::new(out, [batch, channels])))
}

/// [`pool_attention`] with the generic ops.
fn pool_attention_generic<B: Backend>(
    query: Tensor<B, 2>,
    keys: Tensor<B, 3>,
    values: Tensor<B, 3>,
    heads: usize,
) -> Tensor<B, 2> {
    let [batch, tokens, channels] = keys.dims();
    let head_dim = channels / heads;
    let split = |t: Tensor<B, 3>, len: usize| t.reshape([batch, len, heads, head_dim]).swap_dims(1, 2); // [batch, heads, len, head_dim]
    let q = split(query.reshape([batch, 1, channels]), 1);
    let (k, v) = (split(keys, tokens), split(values, tokens));
    let out = attention(q, k, v, None, None, AttentionModuleOptions::default()); // [batch, heads, 1, head_dim]
    out.reshape([batch, channels])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::tests::{assert_close, random};
    use burn::backend::{Autodiff, Flex};

    /// The generic path: `Autodiff<Flex>` takes no fused path here.
    type Generic = Autodiff<Flex>;

    #[test]
    fn pool_tokens_and_attention_match_the_generic_ops() {
        let device = Default::default();
        // A 7 x 7 and a 3 x 5 grid (not square), one and three images, 4 and 2 heads.
        for (batch, channels, [h, w], heads) in [(3, 32, [7, 7], 4), (1, 16, [3, 5], 2)] {
            let map = random([batch, channels, h, w], 1);
            let pos = random([1 + h * w, channels], 2);
            let fused = pool_tokens(
                Tensor::<Flex, 4>::from_data(map.clone(), &device),
                Tensor::from_data(pos.clone(), &device),
            );
            let generic = pool_tokens(Tensor::<Generic, 4>::from_data(map, &device), Tensor::from_data(pos, &device));
            assert_close(fused.into_data(), generic.into_data(), 1e-6, &format!("tokens {batch}x{channels}x{h}x{w}"));

            let tokens = 1 + h * w;
            let (q, k, v) = (
                random([batch, channels], 3),
                random([batch, tokens, channels], 4),
                random([batch, tokens, channels], 5),
            );
            let fused = pool_attention(
                Tensor::<Flex, 2>::from_data(q.clone(), &device),
                Tensor::from_data(k.clone(), &device),
                Tensor::from_data(v.clone(), &device),
                heads,
            );
            let generic = pool_attention(
                Tensor::<Generic, 2>::from_data(q, &device),
                Tensor::from_data(k, &device),
                Tensor::from_data(v, &device),
                heads,
            );
            let what = format!("attention {batch}x{tokens}x{channels}, {heads} heads");
            assert_close(fused.into_data(), generic.into_data(), 2e-6, &what);
        }
    }
}
