//! Resident memory under sustained load (docs/RELIABILITY.md, "Memory under load"): embedding
//! a 10,000-image folder and a 50-epoch training run must keep VmRSS flat after warm-up, e.g.
//! no autodiff graph kept alive from one step to the next. Minutes, not seconds, so ignored by
//! default:
//!
//! ```text
//! cargo test --test soak -- --ignored --nocapture --test-threads 1
//! ```

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::{Autodiff, Flex};
use clip_handid::clip::preprocess::Transform;
use clip_handid::clip::{Clip, ClipConfig, TextConfig, VisionConfig, VitConfig};
use clip_handid::embed::embed_images;
use clip_handid::handid::model::{HandIdConfig, HandIdModel};
use clip_handid::handid::train::{ImageRef, LabeledImages, LrSchedule, TrainConfig, TrainOptions, train};
use common::TempDir;
use image::{Rgb, RgbImage};

/// Resident set size of this process, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// Fails if the resident size grew by more than `allowed` MiB between the sample taken after
/// warm-up and the last one.
fn assert_flat(what: &str, samples: &[(usize, f64)], warm_up: usize, allowed: f64) {
    let after = samples.iter().find(|(at, _)| *at >= warm_up).expect("a sample after warm-up");
    let last = samples.last().unwrap();
    let peak = samples.iter().filter(|(at, _)| *at >= warm_up).map(|s| s.1).fold(0.0, f64::max);
    eprintln!(
        "{what}: {:.1} MiB after warm-up ({} done), {:.1} MiB at the end ({} done), peak {:.1} MiB",
        after.1, after.0, last.1, last.0, peak
    );
    assert!(last.1 - after.1 <= allowed, "{what}: resident memory grew from {:.1} to {:.1} MiB", after.1, last.1);
}

#[test]
#[ignore = "minutes: run with --ignored (docs/RELIABILITY.md)"]
fn embedding_ten_thousand_images_keeps_memory_flat() {
    let dir = TempDir::new("soak-embed");
    let mut rng = common::Rng(7);
    let paths: Vec<PathBuf> = (0..10_000)
        .map(|i| {
            let base = [rng.next(), rng.next(), rng.next()].map(|v| ((v + 1.0) * 127.0) as u8);
            let img =
                RgbImage::from_fn(24, 20, |x, y| Rgb([base[0] ^ (x * 9) as u8, base[1] ^ (y * 7) as u8, base[2]]));
            let path = dir.path(&format!("hand_{i:05}.png"));
            img.save(&path).unwrap();
            path
        })
        .collect();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip/vit_tiny");
    let config = ClipConfig::from_json_file(&fixture.join("config.json")).unwrap();
    let device = Default::default();
    let model =
        Clip::<Flex>::from_safetensors_with_config(&fixture.join("weights.safetensors"), &config, &device).unwrap();
    let mut samples = Vec::new();
    let mut next_report = 0;
    let (embeddings, dim) = embed_images(&model, &paths, &Transform::Clip { size: 32 }, 64, &device, |done| {
        let rss = rss_mib();
        samples.push((done, rss));
        if done >= next_report {
            eprintln!("embedded {done:>5} images: VmRSS {rss:.1} MiB");
            next_report += 1000;
        }
    })
    .unwrap();
    assert_eq!(embeddings.len(), 10_000 * dim);
    // The embeddings themselves grow by 10,000 x 32 floats (1.2 MiB).
    assert_flat("embedding 10,000 images", &samples, 1_000, 16.0);
}

#[test]
#[ignore = "minutes: run with --ignored (docs/RELIABILITY.md)"]
fn fifty_training_epochs_keep_memory_flat() {
    type B = Autodiff<Flex>;
    let device = Default::default();
    let clip = ClipConfig {
        embed_dim: 16,
        vision: VisionConfig::Vit(VitConfig { layers: 1, width: 32, heads: 2, patch_size: 8, image_size: 32 }),
        text: TextConfig { context_length: 77, vocab_size: 49408, width: 16, heads: 2, layers: 1 },
    };
    let mut config = HandIdConfig::new(clip, 4);
    config.input_size = [32, 32];
    let model = HandIdModel::<B>::new(&config, &device).unwrap();
    let mut data = LabeledImages::default();
    for class in 0..4u32 {
        for k in 0..16u32 {
            let image = RgbImage::from_fn(40, 40, |x, y| {
                Rgb([(class * 60 + x * 2) as u8, (y * 5 + k * 9) as u8, ((x + y) * class * 3) as u8])
            });
            data.images.push(ImageRef::Memory(Arc::new(image)));
            data.labels.push(class as usize);
        }
    }
    let mut train_config = TrainConfig::paper(8);
    train_config.epochs = 50;
    train_config.schedule =
        LrSchedule { base_lr: 1e-3, warmup_epochs: 2, warmup_factor: 0.5, milestones: vec![30], gamma: 0.5 };
    train_config.augment.resize = [36, 36];
    train_config.augment.crop = [32, 32];
    let dir = TempDir::new("soak-train");
    let run = dir.path("run");
    let options = TrainOptions { output_dir: run.clone(), stop_after_epochs: None };

    // A sampler thread reads VmRSS and how many epochs metrics.json lists.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, metrics) = (stop.clone(), run.join("metrics.json"));
        std::thread::spawn(move || {
            let mut samples: Vec<(usize, f64)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let epochs = std::fs::read(&metrics)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Vec<serde_json::Value>>(&b).ok())
                    .map_or(0, |v| v.len());
                let rss = rss_mib();
                if samples.last().is_none_or(|(e, _)| *e != epochs) {
                    eprintln!("epoch {epochs:>2} done: VmRSS {rss:.1} MiB");
                }
                samples.push((epochs, rss));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            samples
        })
    };
    let outcome = train(model, &data, &LabeledImages::default(), &train_config, &options, &device).unwrap();
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    assert_eq!(outcome.history.len(), 50);
    // Keep the last sample of each epoch: within an epoch memory rises and falls with each step.
    let mut per_epoch: Vec<(usize, f64)> = Vec::new();
    for (epoch, rss) in samples {
        match per_epoch.last_mut() {
            Some(last) if last.0 == epoch => last.1 = rss,
            _ => per_epoch.push((epoch, rss)),
        }
    }
    assert_flat("50 training epochs", &per_epoch, 5, 16.0);
}
