//! One CLIP-HandID optimiser step at real shapes with random weights.
//!
//! ```text
//! cargo bench --bench train_step                    # flex (CPU)
//! cargo bench --bench train_step --features cuda    # the same on CUDA (wgpu likewise)
//! ```
//!
//! Group `train_step`, ids `vit-b-16/b4` and `rn50/b4`: the re-identification image encoder
//! (224 x 224), BN necks and classifiers, the inversion network through the frozen text
//! encoder, both ID and both contrastive losses, backward, and the two Adam steps (image encoder
//! at the base rate, new layers at 10x) of [`handid::train::step`]. Batch 4 on the CPU (the
//! paper's batch sizes are for a GPU); `CLIP_HANDID_BENCH_BATCH` overrides it. 100 classes.
//!
//! Throughput in images per second. `scripts/bench/pytorch_compare.py` runs the same step in
//! PyTorch.

use std::time::Duration;

use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::Distribution;
use clip_handid::clip::ClipConfig;
use clip_handid::handid::model::{HandIdConfig, HandIdModel};
use clip_handid::handid::train::{TrainConfig, optimizer, step};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

type Inner = clip_handid::backend::Fastest;
type B = Autodiff<Inner>;

const CLASSES: usize = 100;

fn batch_size() -> usize {
    std::env::var("CLIP_HANDID_BENCH_BATCH").ok().and_then(|v| v.parse().ok()).filter(|&b| b > 0).unwrap_or(4)
}

fn bench_train_step(c: &mut Criterion) {
    let device = Default::default();
    eprintln!("backend: {} ({} threads)", <B as Backend>::name(&device), rayon::current_num_threads());
    let batch = batch_size();
    let mut group = c.benchmark_group("train_step");
    group.sample_size(10).warm_up_time(Duration::from_secs(3)).measurement_time(Duration::from_secs(20));
    for (name, clip) in [("vit-b-16", ClipConfig::vit_b_16()), ("rn50", ClipConfig::rn50())] {
        let config = HandIdConfig::new(clip, CLASSES);
        let train = TrainConfig::paper(batch);
        let mut model = Some(HandIdModel::<B>::new(&config, &device).expect("valid config"));
        let mut optim = optimizer::<B>(&train);
        let pixels = Tensor::<B, 4>::random([batch, 3, 224, 224], Distribution::Normal(0.0, 1.0), &device);
        // Two images per identity, as the contrastive losses need positives.
        let labels: Vec<i64> = (0..batch as i64).map(|i| (i / 2) % CLASSES as i64).collect();
        let labels = Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [batch]), &device);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new(name, format!("b{batch}")), |b| {
            b.iter(|| {
                let current = model.take().expect("model is put back after every step");
                let (next, stats) = step(current, &mut optim, pixels.clone(), labels.clone(), &train, 5e-6)
                    .expect("finite loss on random data");
                model = Some(next);
                stats.loss
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_train_step);
criterion_main!(benches);
