//! Minimal cases of backend kernel behaviour that shaped the model code, kept runnable so they
//! can be re-checked on a new Burn release or reported upstream.
//!
//! ```text
//! cargo bench --bench kernels
//! ```
//!
//! Group `channel_affine`: `y = x * scale + shift` per channel of a `[32, 64, 16, 16]`
//! activation (a ResNet BatchNorm in evaluation), written three ways:
//! - `nchw-broadcast`: `scale` and `shift` as `[1, C, 1, 1]` tensors broadcast over the 4-d
//!   activation (what `burn::nn::BatchNorm` does);
//! - `rows-column`: the activation viewed as `[B * C, H * W]`, `scale` and `shift` repeated to
//!   `[B * C, 1]` columns (what `clip_burn::vision::BatchNorm2d` does);
//! - `channels-last`: the activation permuted to `[B, H, W, C]` with `[C]` rows broadcast.
//!
//! On flex 0.21 the first is about 40x slower than the second: the binary-op fast paths cover a
//! broadcast row (`[.., C]`) and a per-row scalar with contiguous outer dims, but a `[1, C, 1, 1]`
//! operand broadcast over a batch falls back to the generic strided iterator.
//!
//! Group `matmul`: `vit-b-16-mlp`, the first MLP product of a ViT-B/16 block at batch 8
//! (`[8 * 197, 768] x [768, 3072]`), the shape that dominates the image encoder's time. Its
//! throughput is in floating-point operations per second (criterion's "elem/s"), to compare with
//! `torch.matmul` on the same shapes (docs/BENCHMARKS.md). `vit-b-16-mlp-batched` is the same
//! product as `burn::nn::Linear` runs it on `[8, 197, 768]`: flex's batched matmul, one
//! single-threaded gemm per image on the rayon pool.

use std::hint::black_box;
use std::time::Duration;

use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::{Criterion, criterion_group, criterion_main};

type B = clip_handid::backend::Fastest;

const SHAPE: [usize; 4] = [32, 64, 16, 16];

fn bench_channel_affine(c: &mut Criterion) {
    let device = Default::default();
    eprintln!("backend: {}", <B as Backend>::name(&device));
    let [batch, channels, h, w] = SHAPE;
    let x = Tensor::<B, 4>::random(SHAPE, Distribution::Normal(0.0, 1.0), &device);
    let scale = Tensor::<B, 1>::random([channels], Distribution::Normal(1.0, 0.1), &device);
    let shift = Tensor::<B, 1>::random([channels], Distribution::Normal(0.0, 0.1), &device);
    let sync = |t: Tensor<B, 4>| -> f32 { t.slice([0..1, 0..1, 0..1, 0..1]).into_scalar().elem() };

    let mut group = c.benchmark_group("channel_affine");
    group.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    group.bench_function("nchw-broadcast", |b| {
        b.iter(|| {
            let s = scale.clone().reshape([1, channels, 1, 1]);
            let t = shift.clone().reshape([1, channels, 1, 1]);
            black_box(sync(x.clone() * s + t))
        })
    });
    group.bench_function("rows-column", |b| {
        b.iter(|| {
            let column = |v: Tensor<B, 1>| v.reshape([1, channels]).repeat_dim(0, batch).reshape([batch * channels, 1]);
            let rows = x.clone().reshape([batch * channels, h * w]);
            black_box(sync((rows * column(scale.clone()) + column(shift.clone())).reshape(SHAPE)))
        })
    });
    group.bench_function("channels-last", |b| {
        b.iter(|| {
            let nhwc = x.clone().permute([0, 2, 3, 1]);
            let y = nhwc * scale.clone().reshape([1, 1, 1, channels]) + shift.clone().reshape([1, 1, 1, channels]);
            black_box(sync(y.permute([0, 3, 1, 2])))
        })
    });
    group.finish();
}

fn bench_matmul(c: &mut Criterion) {
    let device = Default::default();
    let (m, k, n): (usize, usize, usize) = (8 * 197, 768, 3072);
    let a = Tensor::<B, 2>::random([m, k], Distribution::Normal(0.0, 1.0), &device);
    let w = Tensor::<B, 2>::random([k, n], Distribution::Normal(0.0, 0.02), &device);
    let sync = |t: Tensor<B, 2>| -> f32 { t.slice([0..1, 0..1]).into_scalar().elem() };

    let mut group = c.benchmark_group("matmul");
    group.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    group.throughput(criterion::Throughput::Elements((2 * m * k * n) as u64));
    group.bench_function("vit-b-16-mlp", |b| b.iter(|| black_box(sync(a.clone().matmul(w.clone())))));
    // The same product as `burn::nn::Linear` computes it on a `[batch, tokens, width]` input:
    // a batched matmul against the weight broadcast over the batch.
    let a3 = a.clone().reshape([8, 197, k]);
    let w3: Tensor<B, 3> = w.clone().unsqueeze();
    let sync3 = |t: Tensor<B, 3>| -> f32 { t.slice([0..1, 0..1, 0..1]).into_scalar().elem() };
    group.bench_function("vit-b-16-mlp-batched", |b| b.iter(|| black_box(sync3(a3.clone().matmul(w3.clone())))));
    group.finish();
}

criterion_group!(benches, bench_channel_affine, bench_matmul);
criterion_main!(benches);
