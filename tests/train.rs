//! Training behaviour on a tiny model: which parameters learn in each mode, exact resume after
//! an interruption, and clear failures.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use clip_handid::clip::{ClipConfig, TextConfig, VisionConfig, VitConfig};
use clip_handid::handid::model::{HandIdConfig, HandIdModel, TextMode};
use clip_handid::handid::train::{
    ImageRef, LabeledImages, LrSchedule, Scenario, TrainConfig, TrainError, TrainOptions, train,
};
use image::{Rgb, RgbImage};

type B = Autodiff<Flex>;

fn tiny_clip() -> ClipConfig {
    ClipConfig {
        embed_dim: 16,
        vision: VisionConfig::Vit(VitConfig { layers: 1, width: 32, heads: 2, patch_size: 8, image_size: 32 }),
        text: TextConfig { context_length: 77, vocab_size: 49408, width: 16, heads: 2, layers: 1 },
    }
}

/// Burn's random generator is global and seeded per run: tests that seed it must not overlap.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn model(mode: TextMode, seed: u64) -> HandIdModel<B> {
    let device = Default::default();
    B::seed(&device, seed);
    let mut config = HandIdConfig::new(tiny_clip(), 4);
    config.input_size = [32, 32];
    config.text_mode = mode;
    let model = HandIdModel::new(&config, &device).unwrap();
    // Burn initialises parameters lazily, and an uninitialised clone draws its own values:
    // materialise them in place so that every clone shows the model's real weights.
    bytes(&model);
    model
}

fn data(per_class: usize) -> LabeledImages {
    let mut out = LabeledImages::default();
    for class in 0..4u32 {
        for k in 0..per_class as u32 {
            let image = RgbImage::from_fn(40, 40, |x, y| {
                Rgb([(class * 60 + x * 2) as u8, (y * 5 + k * 9) as u8, ((x + y) * class * 3) as u8])
            });
            out.images.push(ImageRef::Memory(Arc::new(image)));
            out.labels.push(class as usize);
        }
    }
    out
}

fn config(mode: TextMode, epochs: usize) -> TrainConfig {
    let mut c = TrainConfig::paper(4);
    c.text_mode = mode;
    c.epochs = epochs;
    c.schedule = LrSchedule { base_lr: 1e-3, warmup_epochs: 1, warmup_factor: 0.5, milestones: vec![2], gamma: 0.5 };
    c.augment.resize = [36, 36];
    c.augment.crop = [32, 32];
    c.augment.color_jitter = 0.1;
    c
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clip-handid-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn options(dir: &Path) -> TrainOptions {
    TrainOptions { output_dir: dir.to_path_buf(), stop_after_epochs: None }
}

/// Every float parameter and buffer of a module, in visiting order.
struct Values(Vec<Vec<f32>>);

impl ModuleVisitor<B> for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.val().into_data().to_vec().unwrap());
    }
}

/// A module's numbers (parameter ids, which differ between processes, left out).
fn bytes<M: Module<B>>(module: &M) -> Vec<Vec<f32>> {
    let mut values = Values(Vec::new());
    module.visit(&mut values);
    values.0
}

#[test]
fn paper_mode_trains_the_inversion_network_reference_mode_does_not_and_text_never_changes() {
    let _serial = serial();
    let device = Default::default();
    let train_data = data(2);
    for (mode, inversion_learns) in [(TextMode::Paper, true), (TextMode::Reference, false)] {
        let before = model(mode, 3);
        let (inversion, text, image) =
            (bytes(&before.inversion), bytes(&before.text_encoder), bytes(&before.image_encoder));
        let dir = scratch(&format!("{mode:?}"));
        let out =
            train(before, &train_data, &LabeledImages::default(), &config(mode, 1), &options(&dir), &device).unwrap();
        assert_eq!(bytes(&out.model.inversion) != inversion, inversion_learns, "{mode:?}: inversion network");
        assert!(bytes(&out.model.text_encoder) == text, "{mode:?}: the text encoder must stay frozen");
        assert!(bytes(&out.model.image_encoder) != image, "{mode:?}: the image encoder must learn");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn a_run_interrupted_and_resumed_ends_exactly_like_an_uninterrupted_one() {
    let _serial = serial();
    let device = Default::default();
    let (train_data, val_data) = (data(3), data(1));
    let config = config(TextMode::Paper, 3);

    let straight_dir = scratch("straight");
    let straight =
        train(model(TextMode::Paper, 5), &train_data, &val_data, &config, &options(&straight_dir), &device).unwrap();

    let resumed_dir = scratch("resumed");
    let mut first = options(&resumed_dir);
    first.stop_after_epochs = Some(2);
    let part = train(model(TextMode::Paper, 5), &train_data, &val_data, &config, &first, &device).unwrap();
    assert!(part.interrupted && part.history.len() == 2);
    // A checkpoint that was being written when the process died is ignored.
    let torn = resumed_dir.join("checkpoints/.tmp-epoch-0002");
    std::fs::create_dir_all(&torn).unwrap();
    std::fs::write(torn.join("model.mpk"), b"half a file").unwrap();
    // A fresh process: a new, differently initialised model is replaced by the checkpoint.
    let resumed =
        train(model(TextMode::Paper, 99), &train_data, &val_data, &config, &options(&resumed_dir), &device).unwrap();

    assert_eq!(resumed.resumed_epochs, 2);
    assert_eq!(resumed.selected_epoch, straight.selected_epoch);
    let strip = |h: &[clip_handid::handid::train::EpochMetrics]| {
        h.iter().map(|m| (m.epoch, m.loss, m.train_accuracy, m.val_accuracy)).collect::<Vec<_>>()
    };
    assert_eq!(strip(&resumed.history), strip(&straight.history));
    assert!(bytes(&resumed.model) == bytes(&straight.model), "resumed weights differ from the uninterrupted run");
    for file in ["config.json", "metrics.csv", "metrics.json", "best/model.mpk", "checkpoints/epoch-0002/state.json"] {
        assert!(resumed_dir.join(file).exists(), "{file} missing");
    }
    std::fs::remove_dir_all(straight_dir).unwrap();
    std::fs::remove_dir_all(resumed_dir).unwrap();
}

#[test]
fn a_run_killed_while_replacing_its_best_model_resumes() {
    let _serial = serial();
    let device = Default::default();
    let (train_data, val_data) = (data(3), data(1));
    let config = config(TextMode::Paper, 3);
    let dir = scratch("killed-best");
    let mut first = options(&dir);
    first.stop_after_epochs = Some(2);
    train(model(TextMode::Paper, 7), &train_data, &val_data, &config, &first, &device).unwrap();
    // Killed between the two renames that replace best/: the old copy is aside, the new one
    // half written.
    std::fs::rename(dir.join("best"), dir.join(".old-best")).unwrap();
    std::fs::create_dir_all(dir.join(".tmp-best")).unwrap();
    std::fs::write(dir.join(".tmp-best/model.mpk"), b"half a file").unwrap();
    let resumed = train(model(TextMode::Paper, 8), &train_data, &val_data, &config, &options(&dir), &device).unwrap();
    assert_eq!((resumed.resumed_epochs, resumed.history.len()), (2, 3));
    assert!(dir.join("best/model.mpk").is_file() && !dir.join(".old-best").exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn divergence_and_bad_settings_stop_with_a_clear_error() {
    let _serial = serial();
    let device = Default::default();
    let train_data = data(2);

    let mut exploding = config(TextMode::Paper, 3);
    exploding.schedule.base_lr = 1e30;
    exploding.schedule.warmup_epochs = 0;
    let dir = scratch("nan");
    let err =
        train(model(TextMode::Paper, 1), &train_data, &LabeledImages::default(), &exploding, &options(&dir), &device)
            .unwrap_err();
    assert!(matches!(err, TrainError::NonFinite { .. }), "{err}");
    assert!(err.to_string().contains("the loss became"), "{err}");

    // Same directory, other settings: refused instead of mixing two runs.
    let err = train(
        model(TextMode::Paper, 1),
        &train_data,
        &LabeledImages::default(),
        &config(TextMode::Paper, 1),
        &options(&dir),
        &device,
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::ConfigMismatch { .. }), "{err}");
    std::fs::remove_dir_all(dir).unwrap();

    let mut zero = config(TextMode::Paper, 1);
    zero.batch_size = 0;
    let err = train(
        model(TextMode::Paper, 1),
        &train_data,
        &LabeledImages::default(),
        &zero,
        &options(&scratch("zero")),
        &device,
    )
    .unwrap_err();
    assert!(err.to_string().contains("batch_size"), "{err}");

    let blocked = scratch("blocked");
    std::fs::write(&blocked, b"a file, not a directory").unwrap();
    let err = train(
        model(TextMode::Paper, 1),
        &train_data,
        &LabeledImages::default(),
        &config(TextMode::Paper, 1),
        &options(&blocked),
        &device,
    )
    .unwrap_err();
    assert!(err.to_string().contains(&blocked.display().to_string()), "{err}");
    std::fs::remove_file(blocked).unwrap();

    let mut fine_tune = config(TextMode::Paper, 1);
    fine_tune.scenario = Scenario::FineTune;
    let dir = scratch("finetune");
    let out =
        train(model(TextMode::Paper, 1), &train_data, &LabeledImages::default(), &fine_tune, &options(&dir), &device)
            .unwrap();
    assert_eq!(out.history[0].contrastive_loss, 0.0);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Records what an observer receives.
#[derive(Default)]
struct Recorded {
    tasks: Vec<(String, usize)>,
    last_done: Vec<usize>,
    finished: usize,
    epochs: Vec<(usize, usize, f64)>,
}

impl clip_handid::handid::progress::Observer for Recorded {
    fn task(&mut self, name: &str, total: usize) {
        self.tasks.push((name.to_string(), total));
        self.last_done.push(0);
    }
    fn advance(&mut self, done: usize, status: &str) {
        assert!(status.contains("loss"), "step status without the running loss: {status:?}");
        *self.last_done.last_mut().expect("advance inside a task") = done;
    }
    fn finish(&mut self) {
        self.finished += 1;
    }
    fn epoch(&mut self, metrics: &clip_handid::handid::train::EpochMetrics, epochs: usize) {
        self.epochs.push((metrics.epoch, epochs, metrics.loss));
    }
}

#[test]
fn training_reports_every_step_and_epoch_to_the_observer() {
    let _serial = serial();
    let device = Default::default();
    let dir = scratch("observer");
    let mut recorded = Recorded::default();
    let train_data = data(2); // 8 images: two steps of 4 per epoch
    let out = clip_handid::handid::train::train_observed(
        model(TextMode::Paper, 5),
        &train_data,
        &LabeledImages::default(),
        &config(TextMode::Paper, 2),
        &options(&dir),
        &device,
        &mut recorded,
    )
    .unwrap();
    assert_eq!(recorded.tasks, vec![("epoch 1/2".to_string(), 2), ("epoch 2/2".to_string(), 2)]);
    assert_eq!(recorded.last_done, vec![2, 2]);
    assert_eq!(recorded.finished, 2);
    let losses: Vec<f64> = out.history.iter().map(|m| m.loss).collect();
    assert_eq!(recorded.epochs, vec![(0, 2, losses[0]), (1, 2, losses[1])]);
    std::fs::remove_dir_all(dir).unwrap();
}
