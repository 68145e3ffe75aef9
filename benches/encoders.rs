//! Inference benchmarks of the CLIP encoders at real shapes with random weights.
//!
//! ```text
//! cargo bench --bench encoders                    # flex (CPU)
//! cargo bench --bench encoders --features cuda    # the same on CUDA (wgpu likewise)
//! ```
//!
//! - group `image_encoder`: `vit-b-16/b1`, `vit-b-16/b8`, `rn50/b1`, `rn50/b8` (CLIP's own
//!   architectures, 224 x 224), and the re-identification variants CLIP-HandID trains
//!   (`rn50-reid/b8`: layer4 stride 1, attention pool over a 14 x 14 grid);
//! - group `text_encoder`: `b8`, eight 77-token prompts.
//!
//! `CLIP_HANDID_BENCH_BATCH=256` replaces the image batch sizes 1 and 8 (for a GPU).
//!
//! Throughput in elements (images or prompts) per second. The backend is the fastest compiled in
//! (`cuda`, then `wgpu`, else `flex`); its name and thread count are printed first.
//! `scripts/bench/pytorch_compare.py` runs the same workloads in PyTorch.

use std::hint::black_box;
use std::time::Duration;

use burn::prelude::*;
use burn::tensor::Distribution;
use clip_handid::clip::ClipConfig;
use clip_handid::clip::text::TextTransformer;
use clip_handid::clip::vision::ImageEncoder;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

type B = clip_handid::backend::Fastest;

/// Batch sizes of the image-encoder group; `CLIP_HANDID_BENCH_BATCH` replaces them with one
/// (e.g. 256 on a GPU).
fn image_batches() -> Vec<usize> {
    match std::env::var("CLIP_HANDID_BENCH_BATCH").ok().and_then(|v| v.parse().ok()).filter(|&b| b > 0) {
        Some(batch) => vec![batch],
        None => vec![1, 8],
    }
}

/// Random normalised pixels `[batch, 3, 224, 224]`.
fn pixels(batch: usize, device: &Device<B>) -> Tensor<B, 4> {
    Tensor::random([batch, 3, 224, 224], Distribution::Normal(0.0, 1.0), device)
}

/// Runs `f` until its result is on the host, so GPU backends are timed to completion.
fn sync(t: Tensor<B, 2>) -> f32 {
    t.sum().into_scalar().elem()
}

fn bench_image_encoders(c: &mut Criterion) {
    let device = Default::default();
    eprintln!("backend: {} ({} threads)", <B as Backend>::name(&device), rayon::current_num_threads());
    let mut group = c.benchmark_group("image_encoder");
    group.sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(10));
    let models: [(&str, ClipConfig, bool); 3] = [
        ("vit-b-16", ClipConfig::vit_b_16(), false),
        ("rn50", ClipConfig::rn50(), false),
        ("rn50-reid", ClipConfig::rn50(), true),
    ];
    for (name, config, reid) in models {
        let mut encoder = ImageEncoder::<B>::new(&config.vision, config.embed_dim, &device);
        if reid {
            encoder = match encoder {
                ImageEncoder::ResNet(r) => ImageEncoder::ResNet(r.into_reid(1, [224, 224]).expect("valid re-ID shape")),
                other => other,
            };
        }
        let batches = if reid { vec![8] } else { image_batches() };
        for batch in batches {
            let input = pixels(batch, &device);
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(BenchmarkId::new(name, format!("b{batch}")), |b| {
                b.iter(|| black_box(sync(encoder.forward(input.clone()).embedding)))
            });
        }
    }
    group.finish();
}

fn bench_text_encoder(c: &mut Criterion) {
    let device = Default::default();
    let config = ClipConfig::vit_b_16();
    let text = TextTransformer::<B>::new(&config.text, config.embed_dim, &device);
    let batch = 8;
    let context = config.text.context_length;
    // Token ids below the vocabulary size, the end-of-text token (largest id) at a varying place.
    let vocab = config.text.vocab_size as i64;
    let ids: Vec<i64> = (0..batch * context)
        .map(|i| {
            let (row, col) = (i / context, i % context);
            if col == 10 + row { vocab - 1 } else { (i as i64 * 7919) % (vocab - 1) }
        })
        .collect();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch, context]), &device);
    let mut group = c.benchmark_group("text_encoder");
    group.sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function(format!("b{batch}"), |b| b.iter(|| black_box(sync(text.forward(ids.clone())))));
    group.finish();
}

criterion_group!(benches, bench_image_encoders, bench_text_encoder);
criterion_main!(benches);
