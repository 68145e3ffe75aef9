//! Training CLIP-HandID (docs/METHOD.md section 3): Adam with coupled L2 weight decay, two
//! learning-rate groups, the per-epoch warm-up and step schedule, re-ID augmentation,
//! validation accuracy for model selection, atomic checkpoints and exact resume.

mod adam;
mod batch;
mod config;
mod run;
mod schedule;
mod trainer;

pub use adam::FusedAdam;
pub use batch::{ImageRef, LabeledImages, augment, epoch_batches, stack, training_batch};
pub use config::{AugmentConfig, Scenario, TrainConfig};
pub use run::{RUN_FORMAT, RUN_MODEL_FILE, RunModel, TrainData, TrainRequest, TrainSummary, train_run};
pub use schedule::LrSchedule;
pub use trainer::{
    EpochMetrics, HandIdOptimizer, StepStats, TrainOptions, TrainOutcome, TrainingLoss, optimizer, step, train,
    train_observed, training_loss,
};

use std::path::PathBuf;

/// Errors of a training run; each names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// An impossible setting.
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// A training or validation image could not be used.
    #[error("training data: {0}")]
    Data(String),
    /// A file of the run could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The output directory holds a run with another configuration.
    #[error("{path} holds a run with a different configuration; use another output directory or the same settings")]
    ConfigMismatch {
        /// The run's saved configuration.
        path: PathBuf,
    },
    /// The loss became NaN or infinite.
    #[error(
        "the loss became {loss} at epoch {epoch}, step {step}; stopping (lower the learning rate or check the data)"
    )]
    NonFinite {
        /// Epoch (0-based).
        epoch: usize,
        /// Step within the epoch.
        step: usize,
        /// The value.
        loss: f32,
    },
}
