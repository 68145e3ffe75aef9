//! The training loop, its checkpoints and its metrics.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use clip_burn::preprocess::{PixelArray, Transform};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::TrainError;
use super::adam::FusedAdam;
use super::batch::{LabeledImages, epoch_batches, stack, training_batch};
use super::config::{Scenario, TrainConfig};
use crate::loss::{label_smoothing_cross_entropy, supervised_contrastive};
use crate::model::{HandIdModel, HandIdOutput};
use crate::progress::{Observer, Silent};

/// Where a run writes (progress goes to the observer of [`train_observed`]).
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Run directory: `config.json`, `metrics.csv`, `metrics.json`, `checkpoints/`, `best/`.
    pub output_dir: PathBuf,
    /// Stop after this many completed epochs, as if the process had been killed (tests).
    pub stop_after_epochs: Option<usize>,
}

/// What one epoch measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Image-encoder learning rate.
    pub lr_image: f64,
    /// New-layer learning rate.
    pub lr_new: f64,
    /// Mean total loss.
    pub loss: f64,
    /// Mean of the summed ID losses.
    pub id_loss: f64,
    /// Mean of the summed contrastive losses (0 for fine-tune-only).
    pub contrastive_loss: f64,
    /// Training accuracy of the projected-feature classifier.
    pub train_accuracy: f64,
    /// Validation accuracy of the projected-feature classifier, if there is a validation set.
    pub val_accuracy: Option<f64>,
    /// Wall time of the epoch.
    pub seconds: f64,
}

/// The run's state saved with every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunState {
    epochs_done: usize,
    best_epoch: Option<usize>,
    best_val_accuracy: Option<f64>,
    history: Vec<EpochMetrics>,
}

/// The result of [`train`].
#[derive(Debug)]
pub struct TrainOutcome<B: AutodiffBackend> {
    /// The selected model: best validation accuracy, or the last epoch without validation data.
    pub model: HandIdModel<B>,
    /// Metrics of every epoch, including those of an earlier, interrupted run.
    pub history: Vec<EpochMetrics>,
    /// Epoch of the selected model.
    pub selected_epoch: usize,
    /// Epochs already done when this call started (a resumed run).
    pub resumed_epochs: usize,
    /// Whether the run stopped early because of `stop_after_epochs`.
    pub interrupted: bool,
}

type Rec = NamedMpkFileRecorder<FullPrecisionSettings>;

fn io_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Io { path: path.to_path_buf(), reason: e.to_string() }
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), TrainError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| io_err(path, e))?;
    crate::eval::write_atomic(path, &bytes).map_err(|e| io_err(path, e))
}

/// Trains `model` on `train_data`, selecting by accuracy on `val_data`, resuming from the last
/// complete checkpoint in `options.output_dir` if there is one. Reports nothing; see
/// [`train_observed`].
pub fn train<B: AutodiffBackend>(
    model: HandIdModel<B>,
    train_data: &LabeledImages,
    val_data: &LabeledImages,
    config: &TrainConfig,
    options: &TrainOptions,
    device: &B::Device,
) -> Result<TrainOutcome<B>, TrainError> {
    train_observed(model, train_data, val_data, config, options, device, &mut Silent)
}

/// [`train`], reporting to `observer`: one task per epoch (its steps, with the running loss,
/// accuracy and learning rate as status) and the figures of every finished epoch.
pub fn train_observed<B: AutodiffBackend>(
    mut model: HandIdModel<B>,
    train_data: &LabeledImages,
    val_data: &LabeledImages,
    config: &TrainConfig,
    options: &TrainOptions,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<TrainOutcome<B>, TrainError> {
    config.validate().map_err(TrainError::Config)?;
    if train_data.len() < config.batch_size {
        return Err(TrainError::Config(format!(
            "{} training images are fewer than one batch of {}",
            train_data.len(),
            config.batch_size
        )));
    }
    // Checkpoints hold the model and Adam's two moments; two are kept, one more is being
    // written, and the best model is saved beside them: about ten f32 copies in the worst case.
    let needed = parameter_count(&model) as u64 * 4 * 10;
    let run = RunDir::prepare(&options.output_dir, config, needed)?;
    let recorder = Rec::new();
    let mut optim = optimizer::<B>(config);

    let mut state = RunState { epochs_done: 0, best_epoch: None, best_val_accuracy: None, history: Vec::new() };
    if let Some(dir) = run.latest_checkpoint()? {
        model = model.load_file(dir.join("model"), &recorder, device).map_err(|e| io_err(&dir, e))?;
        let record = recorder.load(dir.join("optim"), device).map_err(|e| io_err(&dir, e))?;
        optim = optim.load_record(record);
        let text = std::fs::read_to_string(dir.join("state.json")).map_err(|e| io_err(&dir, e))?;
        state = serde_json::from_str(&text).map_err(|e| io_err(&dir.join("state.json"), e))?;
    }
    let resumed_epochs = state.epochs_done;
    let eval_transform = Transform::Reid { height: config.augment.crop[0], width: config.augment.crop[1] };
    let val_pixels: Vec<PixelArray> =
        val_data.images.par_iter().map(|r| r.load().map(|img| eval_transform.apply(&img))).collect::<Result<_, _>>()?;

    let mut interrupted = false;
    for epoch in state.epochs_done..config.epochs {
        if options.stop_after_epochs.is_some_and(|n| epoch >= n) {
            interrupted = true;
            break;
        }
        let started = Instant::now();
        // Dropout masks depend only on (seed, epoch), on every backend, so a resumed run repeats them.
        model.seed_dropout(config.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
        let lr_image = config.schedule.lr(epoch);
        let lr_new = lr_image * config.new_layer_lr_factor;
        let batches = epoch_batches(train_data.len(), config.batch_size, config.seed, epoch);
        observer.task(&format!("epoch {}/{}", epoch + 1, config.epochs), batches.len());
        let (mut loss_sum, mut id_sum, mut con_sum, mut correct, mut seen) = (0.0, 0.0, 0.0, 0usize, 0usize);
        for (step_index, indices) in batches.iter().enumerate() {
            let (pixels, labels) =
                training_batch::<B>(train_data, indices, &config.augment, config.seed, epoch, device)?;
            let (next, stats) = step(model, &mut optim, pixels, labels, config, lr_image)
                .map_err(|loss| TrainError::NonFinite { epoch, step: step_index, loss })?;
            model = next;
            correct += stats.correct;
            seen += indices.len();
            loss_sum += stats.loss;
            id_sum += stats.id_loss;
            con_sum += stats.contrastive_loss;
            let status = format!(
                "loss {:.4} acc {:.3} lr {:.2e}",
                loss_sum / (step_index + 1) as f64,
                correct as f64 / seen as f64,
                lr_image
            );
            observer.advance(step_index + 1, &status);
        }
        observer.finish();
        let steps = batches.len().max(1) as f64;
        let val_accuracy = (!val_pixels.is_empty()).then(|| validation_accuracy(&model.valid(), &val_pixels, val_data));
        let metrics = EpochMetrics {
            epoch,
            lr_image,
            lr_new,
            loss: loss_sum / steps,
            id_loss: id_sum / steps,
            contrastive_loss: con_sum / steps,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_accuracy,
            seconds: started.elapsed().as_secs_f64(),
        };
        observer.epoch(&metrics, config.epochs);
        let improved = match (val_accuracy, state.best_val_accuracy) {
            (Some(v), Some(best)) => v > best,
            (Some(_), None) => true,
            (None, _) => true,
        };
        state.history.push(metrics);
        state.epochs_done = epoch + 1;
        if improved {
            state.best_epoch = Some(epoch);
            state.best_val_accuracy = val_accuracy;
            run.save_best(&model, &recorder)?;
        }
        run.save_checkpoint(epoch, &model, optim.to_record(), &state, &recorder)?;
        run.write_metrics(&state.history)?;
    }

    let selected_epoch = state.best_epoch.unwrap_or(state.epochs_done.saturating_sub(1));
    if !interrupted && state.best_epoch.is_some() {
        model =
            model.load_file(run.best_dir().join("model"), &recorder, device).map_err(|e| io_err(&run.best_dir(), e))?;
    }
    Ok(TrainOutcome { model, history: state.history, selected_epoch, resumed_epochs, interrupted })
}

/// The optimiser of a CLIP-HandID model: Adam with coupled L2 weight decay ([`FusedAdam`]: one
/// pass per parameter on flex, Burn's `Adam` elsewhere; the same records).
pub type HandIdOptimizer<B> = OptimizerAdaptor<FusedAdam, HandIdModel<B>, B>;

/// Adam with `config`'s betas, epsilon and coupled weight decay.
pub fn optimizer<B: AutodiffBackend>(config: &TrainConfig) -> HandIdOptimizer<B> {
    let adam = FusedAdam::new(config.beta_1, config.beta_2, config.epsilon, Some(config.weight_decay as f32));
    OptimizerAdaptor::from(adam)
}

/// What one optimiser step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Total loss.
    pub loss: f64,
    /// Summed ID losses.
    pub id_loss: f64,
    /// Summed contrastive losses (0 without the text branch).
    pub contrastive_loss: f64,
    /// Images of the batch the projected-feature classifier got right.
    pub correct: usize,
}

/// The losses of one training batch.
#[derive(Debug, Clone)]
pub struct TrainingLoss<B: Backend> {
    /// What the optimiser minimises: `id` plus `contrastive` where it runs.
    pub total: Tensor<B, 1>,
    /// Both ID losses (label-smoothed cross-entropy on the two classifiers).
    pub id: Tensor<B, 1>,
    /// Both image-text contrastive losses, in the CLIP-HandID scenario with the text branch on.
    pub contrastive: Option<Tensor<B, 1>>,
}

/// The losses of [`step`] for a forward pass `out` of a batch with class `labels` `[batch]`.
pub fn training_loss<B: Backend>(
    out: &HandIdOutput<B>,
    labels: Tensor<B, 1, Int>,
    config: &TrainConfig,
) -> TrainingLoss<B> {
    let eps = config.label_smoothing;
    let id = label_smoothing_cross_entropy(out.logits_features.clone(), labels.clone(), eps)
        + label_smoothing_cross_entropy(out.logits_projected.clone(), labels.clone(), eps);
    let contrastive = match (&out.text, config.scenario == Scenario::ClipHandId) {
        (Some(text), true) => Some(
            supervised_contrastive(out.projected.clone(), text.clone(), labels.clone(), labels.clone())
                + supervised_contrastive(text.clone(), out.projected.clone(), labels.clone(), labels),
        ),
        _ => None,
    };
    let total = match &contrastive {
        Some(c) => id.clone() + c.clone(),
        None => id.clone(),
    };
    TrainingLoss { total, id, contrastive }
}

/// One optimiser step on a batch of augmented pixels `[batch, 3, h, w]` and their class labels
/// `[batch]`: both ID losses, the two contrastive losses in the CLIP-HandID scenario, then Adam
/// on the image encoder at `lr_image` and on the new layers at `lr_image` times the config's
/// factor. A NaN or infinite loss is returned as the error, before any weight changes.
pub fn step<B: AutodiffBackend>(
    model: HandIdModel<B>,
    optim: &mut HandIdOptimizer<B>,
    pixels: Tensor<B, 4>,
    labels: Tensor<B, 1, Int>,
    config: &TrainConfig,
    lr_image: f64,
) -> Result<(HandIdModel<B>, StepStats), f32> {
    let out = model.forward(pixels);
    let TrainingLoss { total: loss, id: id_loss, contrastive } = training_loss(&out, labels.clone(), config);
    let loss_value: f32 = loss.clone().into_scalar().elem();
    if !loss_value.is_finite() {
        return Err(loss_value);
    }
    let predicted = out.logits_projected.argmax(1).reshape([-1]);
    let labels_cast = labels.cast(predicted.dtype());
    let correct = predicted.equal(labels_cast).int().sum().into_scalar().elem::<i64>() as usize;

    let mut grads = loss.backward();
    let image_grads = GradientsParams::from_module(&mut grads, &model.image_encoder);
    let new_grads = GradientsParams::from_grads(grads, &model);
    let model = optim.step(lr_image, model, image_grads);
    let model = optim.step(lr_image * config.new_layer_lr_factor, model, new_grads);
    let stats = StepStats {
        loss: loss_value as f64,
        id_loss: id_loss.into_scalar().elem::<f64>(),
        contrastive_loss: contrastive.map_or(0.0, |c| c.into_scalar().elem::<f64>()),
        correct,
    };
    Ok((model, stats))
}

/// The number of float parameters, read from their declared shapes: `Module::num_params`
/// would initialise lazily initialised parameters here, in visiting order, and so change the
/// random values a fresh model starts from.
fn parameter_count<B: Backend, M: Module<B>>(module: &M) -> usize {
    struct Count(usize);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Count {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            self.0 += param.lazy_shape().num_elements();
        }
    }
    let mut count = Count(0);
    module.visit(&mut count);
    count.0
}

fn validation_accuracy<B: Backend>(model: &HandIdModel<B>, pixels: &[PixelArray], data: &LabeledImages) -> f64 {
    let device = model.neck_projected.weight.device();
    let mut correct = 0usize;
    for (chunk, labels) in pixels.chunks(32).zip(data.labels.chunks(32)) {
        let logits = model.classify(stack::<B>(chunk, &device));
        let predicted: Vec<i64> = logits.argmax(1).into_data().convert::<i64>().to_vec().unwrap_or_default();
        correct += predicted.iter().zip(labels).filter(|(p, l)| **p as usize == **l).count();
    }
    correct as f64 / pixels.len().max(1) as f64
}

/// The files of one run directory.
struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Creates the directory (checking before any long work that it is writable and has
    /// `needed` bytes free) and writes or checks `config.json`.
    fn prepare(root: &Path, config: &TrainConfig, needed: u64) -> Result<Self, TrainError> {
        clip_burn::io::check_output_dir(root, needed).map_err(|e| io_err(root, e))?;
        std::fs::create_dir_all(root.join("checkpoints")).map_err(|e| io_err(root, e))?;
        // A run killed between the two renames of `write_dir_atomically` left the previous
        // best model aside; it is the one the last checkpoint's state refers to.
        let (best, old_best) = (root.join("best"), root.join(".old-best"));
        if !best.exists() && old_best.is_dir() {
            std::fs::rename(&old_best, &best).map_err(|e| io_err(&best, e))?;
        }
        let config_path = root.join("config.json");
        if config_path.exists() {
            let text = std::fs::read_to_string(&config_path).map_err(|e| io_err(&config_path, e))?;
            let saved: TrainConfig = serde_json::from_str(&text).map_err(|e| io_err(&config_path, e))?;
            if &saved != config {
                return Err(TrainError::ConfigMismatch { path: config_path });
            }
        } else {
            write_json(&config_path, config)?;
        }
        Ok(Self { root: root.to_path_buf() })
    }

    fn best_dir(&self) -> PathBuf {
        self.root.join("best")
    }

    /// The complete checkpoint with the highest epoch; half-written ones (`.tmp-*`) are ignored.
    fn latest_checkpoint(&self) -> Result<Option<PathBuf>, TrainError> {
        let dir = self.root.join("checkpoints");
        let entries = std::fs::read_dir(&dir).map_err(|e| io_err(&dir, e))?;
        let latest = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name().to_str().and_then(|n| n.strip_prefix("epoch-")).and_then(|n| n.parse::<usize>().ok())
            })
            .max();
        Ok(latest.map(|epoch| dir.join(format!("epoch-{epoch:04}"))))
    }

    /// Writes a directory's files under a temporary name, then renames it into place: a run
    /// killed mid-write leaves the previous checkpoint untouched.
    fn write_dir_atomically(
        &self,
        target: &Path,
        write: impl FnOnce(&Path) -> Result<(), TrainError>,
    ) -> Result<(), TrainError> {
        let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("dir");
        let tmp = target.with_file_name(format!(".tmp-{name}"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
        write(&tmp)?;
        let old = target.with_file_name(format!(".old-{name}"));
        if target.exists() {
            let _ = std::fs::remove_dir_all(&old);
            std::fs::rename(target, &old).map_err(|e| io_err(target, e))?;
        }
        std::fs::rename(&tmp, target).map_err(|e| io_err(target, e))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    fn save_best<B: AutodiffBackend>(&self, model: &HandIdModel<B>, recorder: &Rec) -> Result<(), TrainError> {
        self.write_dir_atomically(&self.best_dir(), |dir| {
            model.clone().save_file(dir.join("model"), recorder).map_err(|e| io_err(dir, e))
        })
    }

    fn save_checkpoint<B: AutodiffBackend, R: burn::record::Record<B>>(
        &self,
        epoch: usize,
        model: &HandIdModel<B>,
        optim: R,
        state: &RunState,
        recorder: &Rec,
    ) -> Result<(), TrainError> {
        let target = self.root.join("checkpoints").join(format!("epoch-{epoch:04}"));
        self.write_dir_atomically(&target, |dir| {
            model.clone().save_file(dir.join("model"), recorder).map_err(|e| io_err(dir, e))?;
            Recorder::<B>::record(recorder, optim, dir.join("optim")).map_err(|e| io_err(dir, e))?;
            write_json(&dir.join("state.json"), state)
        })?;
        // Keep the two most recent checkpoints.
        if epoch >= 2 {
            let stale = self.root.join("checkpoints").join(format!("epoch-{:04}", epoch - 2));
            let _ = std::fs::remove_dir_all(stale);
        }
        Ok(())
    }

    fn write_metrics(&self, history: &[EpochMetrics]) -> Result<(), TrainError> {
        write_json(&self.root.join("metrics.json"), &history)?;
        let mut csv =
            String::from("epoch,lr_image,lr_new,loss,id_loss,contrastive_loss,train_accuracy,val_accuracy,seconds\n");
        for m in history {
            csv.push_str(&format!(
                "{},{:e},{:e},{:.6},{:.6},{:.6},{:.6},{},{:.3}\n",
                m.epoch,
                m.lr_image,
                m.lr_new,
                m.loss,
                m.id_loss,
                m.contrastive_loss,
                m.train_accuracy,
                m.val_accuracy.map_or(String::new(), |a| format!("{a:.6}")),
                m.seconds
            ));
        }
        let path = self.root.join("metrics.csv");
        crate::eval::write_atomic(&path, csv.as_bytes()).map_err(|e| io_err(&path, e))
    }
}
