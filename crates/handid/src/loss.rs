//! Training losses (docs/METHOD.md section 2).

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Cross-entropy with label smoothing: targets `(1 - epsilon)` one-hot `+ epsilon / K`,
/// averaged over the batch. `logits` `[n, k]`, `labels` `[n]` in `0..k`.
pub fn label_smoothing_cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
    epsilon: f64,
) -> Tensor<B, 1> {
    let [_, classes] = logits.dims();
    let log_probs = log_softmax(logits, 1); // [n, k]
    let one_hot: Tensor<B, 2> = labels.one_hot::<2>(classes).float();
    let targets = one_hot.mul_scalar(1.0 - epsilon).add_scalar(epsilon / classes as f64);
    (targets * log_probs).sum_dim(1).mean().neg()
}

/// Supervised contrastive loss with multiple positives, temperature 1 and no feature
/// normalisation (CLIP-ReID's `SupConLoss`): `logits = a b^T`, the row maximum (detached)
/// subtracted, `log_prob = logits - logsumexp(row)`, the mean of `log_prob` over the positives
/// of each row (same label), and minus the batch mean. `a` `[n, d]`, `b` `[m, d]`.
///
/// A row without any positive contributes 0 (PyTorch would give NaN).
pub fn supervised_contrastive<B: Backend>(
    a: Tensor<B, 2>,
    b: Tensor<B, 2>,
    labels_a: Tensor<B, 1, Int>,
    labels_b: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    let [n, _] = a.dims();
    let m = b.dims()[0];
    let logits = a.matmul(b.transpose()); // [n, m]
    let logits = logits.clone() - logits.max_dim(1).detach();
    let log_prob = logits.clone() - logits.exp().sum_dim(1).log(); // [n, m]
    let labels_b = labels_b.cast(labels_a.dtype());
    let positives = labels_a.reshape([n, 1]).expand([n, m]).equal(labels_b.reshape([1, m]).expand([n, m])).float();
    let count = positives.clone().sum_dim(1).clamp_min(1.0); // [n, 1]
    ((positives * log_prob).sum_dim(1) / count).mean().neg()
}
