//! Multi-head attention on flex, from torch's packed `in_proj` projection `[batch, tokens, 3
//! width]` read in place: every query ([`attention_packed`], each transformer block), or one
//! query per sequence ([`attention_at`], the last block of an encoder whose output is one token:
//! the ViT's class token, the text's end-of-text token).

use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use rayon::prelude::*;

use super::product::{self, Threads, gemm_f32};
use super::train::{self, AttentionDims};
use super::{SharedMut, contiguous, f32s, from_flex, into_flex, math};

/// Multi-head self-attention from the packed projection `qkv` `[batch, tokens, 3 width]`
/// (queries, keys, values side by side, torch's `in_proj` layout) to the merged heads
/// `[batch, tokens, width]`, before the output projection; `causal` masks future tokens.
/// Scale `1 / sqrt(head_dim)`.
pub fn attention_packed<B: Backend>(qkv: Tensor<B, 3>, heads: usize, causal: bool) -> Tensor<B, 3> {
    let [batch, tokens, packed] = qkv.dims();
    let width = packed / 3;
    let qkv = match train::attention_packed(qkv, heads, causal) {
        Ok(out) => return out,
        Err(qkv) => qkv,
    };
    match into_flex(qkv) {
        Ok(flex) => {
            let dims = AttentionDims { batch, tokens, width, heads, causal };
            from_flex(attention_flex(&contiguous(&flex), dims, None))
        }
        Err(qkv) => attention_generic(qkv, heads, causal),
    }
}

/// [`attention_packed`] with Burn's generic ops: split the heads, `attention`, merge them.
pub(super) fn attention_generic<B: Backend>(qkv: Tensor<B, 3>, heads: usize, causal: bool) -> Tensor<B, 3> {
    let [batch, tokens, packed] = qkv.dims();
    let width = packed / 3;
    let head_dim = width / heads;
    let split = |t: Tensor<B, 3>| t.reshape([batch, tokens, heads, head_dim]).swap_dims(1, 2);
    let q = split(qkv.clone().narrow(2, 0, width)); // [batch, heads, tokens, head_dim]
    let k = split(qkv.clone().narrow(2, width, width));
    let v = split(qkv.narrow(2, 2 * width, width));
    let options = AttentionModuleOptions { is_causal: causal, ..Default::default() };
    let out = attention(q, k, v, None, None, options); // [batch, heads, tokens, head_dim]
    out.swap_dims(1, 2).reshape([batch, tokens, width])
}

/// The fused attention on flex storage; when `probabilities` is given (`[batch, heads, tokens,
/// tokens]`), the softmax of every `(image, head)` is left there for the backward pass.
pub(super) fn attention_flex(qkv: &FlexTensor, dims: AttentionDims, probabilities: Option<&mut [f32]>) -> FlexTensor {
    let AttentionDims { batch, tokens, width, heads, causal } = dims;
    let data: &[f32] = qkv.as_slice().expect("contiguous f32");
    assert_eq!(data.len(), batch * tokens * 3 * width, "attention: qkv is [batch, tokens, 3 width]");
    let head_dim = width / heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let row = 3 * width as isize; // stride between tokens in qkv
    // Initialised head by head by the tasks below (`Write::Uninitialised`): the heads of every
    // image cover its `[tokens, width]`.
    let mut out: Vec<f32> = Vec::with_capacity(batch * tokens * width);
    let dst = SharedMut(out.as_mut_ptr());
    if let Some(p) = &probabilities {
        assert_eq!(
            p.len(),
            batch * heads * tokens * tokens,
            "attention: probabilities are [batch, heads, tokens, tokens]"
        );
    }
    let kept = probabilities.map(|p| SharedMut(p.as_mut_ptr()));
    (0..batch * heads).into_par_iter().for_each_init(
        || vec![0.0f32; tokens * tokens],
        |scratch, task| {
            // SAFETY: task `task` alone uses the `tokens x tokens` block `task` of the kept
            // probabilities (the length was checked above).
            let scores: &mut [f32] = match kept {
                Some(kept) => unsafe {
                    std::slice::from_raw_parts_mut(kept.get().add(task * tokens * tokens), tokens * tokens)
                },
                None => scratch.as_mut_slice(),
            };
            let (b, h) = (task / heads, task % heads);
            let base = b * tokens * 3 * width + h * head_dim;
            let (q, k, v) = (&data[base..], &data[base + width..], &data[base + 2 * width..]);
            // SAFETY: all reads stay inside `data` (the last one ends at the final token's value
            // columns of this head), and the writes go to `out[b, :, h * head_dim ..][..head_dim]`,
            // which belongs to this task alone.
            unsafe {
                // scores[i, j] = scale * q_i . k_j: k read transposed through its strides.
                let dst = (scores.as_mut_ptr(), tokens as isize, 1);
                gemm_f32(
                    [tokens, tokens, head_dim],
                    dst,
                    (q.as_ptr(), row, 1),
                    (k.as_ptr(), 1, row),
                    scale,
                    false,
                    Threads::One,
                );
            }
            for (i, r) in scores.chunks_exact_mut(tokens).enumerate() {
                math::softmax_in_place(r, if causal { i + 1 } else { tokens });
            }
            unsafe {
                // out[b, i, head] = sum_j p[i, j] v_j
                let out = (dst.get().add(b * tokens * width + h * head_dim), width as isize, 1);
                let p = (scores.as_ptr(), tokens as isize, 1);
                let v = (v.as_ptr(), row, 1);
                product::gemm_f32_then(
                    [tokens, head_dim, tokens],
                    out,
                    p,
                    v,
                    1.0,
                    product::Write::Uninitialised,
                    Threads::One,
                    &|_| {},
                );
            }
        },
    );
    // SAFETY: the tasks initialised every element (above).
    unsafe { out.set_len(batch * tokens * width) };
    let shape = burn::tensor::Shape::new([batch, tokens, width]);
    FlexTensor::from_data(burn::tensor::TensorData::new(out, shape))
}

/// Multi-head attention of one query per sequence, from the packed projection `qkv` `[batch,
/// tokens, 3 width]`: sequence `b`'s query is its token `positions[b]`, which attends to every
/// token, or with `causal` to tokens `0..=positions[b]`. Returns the merged heads `[batch,
/// width]`: the rows `positions` of [`attention_packed`]'s output, without the other queries.
pub fn attention_at<B: Backend>(
    qkv: Tensor<B, 3>,
    positions: Tensor<B, 1, Int>,
    heads: usize,
    causal: bool,
) -> Tensor<B, 2> {
    let [batch, tokens, packed] = qkv.dims();
    let width = packed / 3;
    if positions.dims() != [batch] || packed % 3 != 0 || heads == 0 || width % heads != 0 {
        return attention_at_generic(qkv, positions, heads, causal);
    }
    let qkv = match into_flex(qkv) {
        Ok(qkv) => qkv,
        Err(qkv) => return attention_at_generic(qkv, positions, heads, causal),
    };
    // On flex the positions are on the host already; one out of range takes the generic path,
    // whose `gather` reports it as it always did.
    let at: Vec<usize> = positions.clone().into_data().iter::<i64>().map(|p| p as usize).collect();
    if at.iter().any(|&p| p >= tokens) {
        return attention_at_generic(from_flex(qkv), positions, heads, causal);
    }
    let qkv = contiguous(&qkv);
    let data = f32s(&qkv);
    let head_dim = width / heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let mut out = vec![0.0f32; batch * width];
    // One task per (sequence, head): its `head_dim` slice of the output row.
    out.par_chunks_mut(head_dim).enumerate().for_each_init(Vec::new, |scores: &mut Vec<f32>, (task, out)| {
        let (b, head) = (task / heads, task % heads);
        let (position, offset) = (at[b], head * head_dim);
        let sequence = &data[b * tokens * packed..][..tokens * packed];
        let query = &sequence[position * packed + offset..][..head_dim];
        let keys = Rows { data: &sequence[width..], stride: packed, offset };
        let values = Rows { data: &sequence[2 * width..], stride: packed, offset };
        let count = if causal { position + 1 } else { tokens };
        attend(query, keys, values, count, scale, scores, out);
    });
    from_flex(FlexTensor::from_data(TensorData::new(out, [batch, width])))
}

/// [`attention_at`] with Burn's generic ops: the queries gathered, the heads split, `attention`
/// with a mask of the tokens after each query when `causal`.
fn attention_at_generic<B: Backend>(
    qkv: Tensor<B, 3>,
    positions: Tensor<B, 1, Int>,
    heads: usize,
    causal: bool,
) -> Tensor<B, 2> {
    let [batch, tokens, packed] = qkv.dims();
    let width = packed / 3;
    let head_dim = width / heads;
    let device = qkv.device();
    let index = positions.clone().reshape([batch, 1, 1]).expand([batch, 1, width]);
    let query = qkv.clone().narrow(2, 0, width).gather(1, index); // [batch, 1, width]
    let split = |t: Tensor<B, 3>, len: usize| t.reshape([batch, len, heads, head_dim]).swap_dims(1, 2);
    let q = split(query, 1); // [batch, heads, 1, head_dim]
    let k = split(qkv.clone().narrow(2, width, width), tokens); // [batch, heads, tokens, head_dim]
    let v = split(qkv.narrow(2, 2 * width, width), tokens);
    let mask = causal.then(|| {
        // In the positions' integer type: flex compares two integer tensors of one type only.
        let keys = Tensor::<B, 1, Int>::arange(0..tokens as i64, &device).cast(positions.dtype());
        let keys = keys.reshape([1, tokens]).expand([batch, tokens]);
        let after = keys.greater(positions.reshape([batch, 1]).expand([batch, tokens])); // [batch, tokens]
        after.reshape([batch, 1, 1, tokens]).expand([batch, heads, 1, tokens])
    });
    let out = attention(q, k, v, mask, None, AttentionModuleOptions::default()); // [batch, heads, 1, head_dim]
    out.reshape([batch, width])
}

/// Rows of a matrix stored `stride` values apart, each read at `offset..offset + len` (one
/// head's slice of the keys or values, in place in the linears' output).
#[derive(Clone, Copy)]
pub(super) struct Rows<'a> {
    /// The first row's start; row `j` begins at `j * stride`.
    pub data: &'a [f32],
    /// Values from one row to the next.
    pub stride: usize,
    /// Where the slice starts within a row.
    pub offset: usize,
}

impl Rows<'_> {
    /// Row `j`'s slice of `len` values.
    fn row(&self, j: usize, len: usize) -> &[f32] {
        &self.data[j * self.stride + self.offset..][..len]
    }
}

/// `out = sum_j p_j v_j` with `p = softmax_j(scale * query . k_j)` over the first `count` rows of
/// `keys` and `values` (one query's attention within one head); `scores` is scratch space and
/// `out` starts at zero.
pub(super) fn attend(
    query: &[f32],
    keys: Rows<'_>,
    values: Rows<'_>,
    count: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let len = query.len();
    scores.clear();
    scores.extend((0..count).map(|j| {
        let dot: f32 = query.iter().zip(keys.row(j, len)).map(|(a, b)| a * b).sum();
        dot * scale
    }));
    math::softmax_in_place(scores, count);
    for (j, &p) in scores.iter().enumerate() {
        for (o, &x) in out.iter_mut().zip(values.row(j, len)) {
            *o += p * x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::tests::{assert_close, random};
    use burn::backend::{Autodiff, Flex};

    /// The generic path: `Autodiff<Flex>` takes no fused path in `attention_at`.
    type Generic = Autodiff<Flex>;

    #[test]
    fn packed_attention_matches_the_generic_ops() {
        let device = Default::default();
        for (causal, tokens) in [(false, 197), (true, 77), (false, 1)] {
            let qkv = random([3, tokens, 3 * 48], tokens as u64);
            let fused = attention_packed(Tensor::<Flex, 3>::from_data(qkv.clone(), &device), 4, causal);
            let generic = attention_generic(Tensor::<Flex, 3>::from_data(qkv, &device), 4, causal);
            assert_close(
                fused.into_data(),
                generic.into_data(),
                2e-6,
                &format!("attention causal={causal} tokens={tokens}"),
            );
        }
    }

    /// Rows `positions` of a `[batch, tokens, width]` tensor.
    fn rows(all: TensorData, positions: &[usize]) -> TensorData {
        let (tokens, width) = (all.shape[1], all.shape[2]);
        let values: Vec<f32> = all.to_vec().unwrap();
        let picked: Vec<f32> = positions
            .iter()
            .enumerate()
            .flat_map(|(b, &p)| values[(b * tokens + p) * width..][..width].to_vec())
            .collect();
        TensorData::new(picked, [positions.len(), width])
    }

    #[test]
    fn one_query_attention_is_the_rows_of_the_full_one() {
        let device = Default::default();
        // The class token of every image (ViT), end-of-text tokens at varying places, the first
        // and the last token (causal: a query that sees one key, and one that sees all).
        let cases: [(bool, usize, &[usize]); 4] =
            [(false, 197, &[0, 0, 0]), (true, 77, &[10, 76, 3]), (true, 9, &[0, 8, 4]), (false, 1, &[0, 0, 0])];
        for (causal, tokens, positions) in cases {
            let qkv = random([3, tokens, 3 * 48], tokens as u64 + 1);
            let ids: Vec<i64> = positions.iter().map(|&p| p as i64).collect();
            let at = || Tensor::<Flex, 1, Int>::from_data(TensorData::new(ids.clone(), [3]), &device);
            let full = attention_generic(Tensor::<Flex, 3>::from_data(qkv.clone(), &device), 4, causal);
            let want = rows(full.into_data(), positions);
            let what = format!("causal={causal} tokens={tokens} positions={positions:?}");
            let fused = attention_at(Tensor::<Flex, 3>::from_data(qkv.clone(), &device), at(), 4, causal);
            assert_close(fused.into_data(), want.clone(), 2e-6, &format!("fused {what}"));
            let ids = Tensor::<Generic, 1, Int>::from_data(TensorData::new(ids.clone(), [3]), &device);
            let generic = attention_at(Tensor::<Generic, 3>::from_data(qkv, &device), ids, 4, causal);
            assert_close(generic.into_data(), want, 2e-6, &format!("generic {what}"));
        }
    }
}
