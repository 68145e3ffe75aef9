//! Image input pipeline: decode 1600 x 1200 JPEGs (the 11k Hands size) from disk and resize
//! them to the model input, as evaluation and embedding do.
//!
//! ```text
//! cargo bench --bench pipeline
//! ```
//!
//! Group `pipeline`, ids `reid-224/1-thread` and `reid-224/all-threads`: [`load_rgb`] then the
//! re-identification transform (bicubic resize to 224 x 224, normalisation) of 16 distinct
//! JPEGs, on one rayon thread and on the global pool. Throughput in images per second.
//! The JPEGs are generated (smooth gradients with texture, quality 90, 4:2:0) into a
//! temporary directory.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use clip_handid::clip::preprocess::{Transform, load_rgb};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use image::codecs::jpeg::JpegEncoder;
use image::{Rgb, RgbImage};
use rayon::prelude::*;

const IMAGES: usize = 16;
const WIDTH: u32 = 1600;
const HEIGHT: u32 = 1200;

/// Writes the benchmark's JPEGs and returns their paths.
fn write_jpegs(dir: &std::path::Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("temporary directory");
    (0..IMAGES)
        .map(|k| {
            let img = RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
                let noise = ((x.wrapping_mul(7919) ^ y.wrapping_mul(104_729) ^ (k as u32 * 31)) % 23) as u8;
                Rgb([(x / 8) as u8 ^ noise, (y / 6) as u8, ((x + y) / 12 + k as u32 * 9) as u8])
            });
            let path = dir.join(format!("hand_{k:02}.jpg"));
            let mut bytes = Vec::new();
            JpegEncoder::new_with_quality(&mut bytes, 90).encode_image(&img).expect("encodable image");
            std::fs::write(&path, bytes).expect("writable temporary directory");
            path
        })
        .collect()
}

fn bench_pipeline(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("clip-handid-bench-pipeline-{}", std::process::id()));
    let paths = write_jpegs(&dir);
    let transform = Transform::Reid { height: 224, width: 224 };
    let load = |p: &PathBuf| transform.apply(&load_rgb(p).expect("generated JPEG decodes"));
    let single = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("thread pool");
    eprintln!("pipeline: {IMAGES} JPEGs {WIDTH}x{HEIGHT}, all threads = {}", rayon::current_num_threads());

    let mut group = c.benchmark_group("pipeline");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(IMAGES as u64));
    group.bench_function(BenchmarkId::new("reid-224", "1-thread"), |b| {
        b.iter(|| single.install(|| black_box(paths.par_iter().map(load).collect::<Vec<_>>())))
    });
    group.bench_function(BenchmarkId::new("reid-224", "all-threads"), |b| {
        b.iter(|| black_box(paths.par_iter().map(load).collect::<Vec<_>>()))
    });
    group.finish();
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, bench_pipeline);
criterion_main!(benches);
