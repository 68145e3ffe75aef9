//! CLIP-HandID: identify people from images of their hands.
//!
//! Load a model (CLIP weights or one exported from a training run), embed two images, compare:
//!
//! ```no_run
//! use std::path::Path;
//! use burn::backend::Flex;
//! use handid::retrieval::{RetrievalModel, cosine};
//!
//! let device = Default::default();
//! let model = RetrievalModel::<Flex>::load(Path::new("my-model.safetensors"), &device)?;
//! let features = model.embed(&["questioned.jpg", "known.jpg"], &device, |_| {})?;
//! let score = cosine(features.row(0), features.row(1));
//! println!("cosine similarity {score:.3} (model SHA-256 {})", model.sha256());
//! # Ok::<(), handid::retrieval::RetrievalError>(())
//! ```
//!
//! One call per task:
//!
//! | task | call |
//! |---|---|
//! | load any model for retrieval | [`retrieval::RetrievalModel::load`] |
//! | train on a folder per identity or a split manifest | [`train::train_run`] |
//! | export a run's encoder and BN necks | [`retrieval::export_run`] |
//! | collect images from files and folders | [`retrieval::collect_images`] |
//! | embed images to a file with provenance | [`retrieval::embed_to_file`] |
//! | build / query a gallery index (checked by the model's SHA-256) | [`retrieval::build_index`], [`retrieval::query_index`], [`retrieval::check_index_model`] |
//! | evaluate any model on a split | [`retrieval::evaluate_model`] |
//! | draw a dataset's split | [`data::draw_split`] |
//! | the demo on synthetic hands | [`demo::run_demo`] |
//! | Table I | [`reproduce::reproduce_observed`] |
//!
//! Modules:
//! - [`data`]: the 11k Hands and PolyU HD datasets, folder-per-identity datasets, seeded
//!   split protocols and split manifests;
//! - [`eval`]: retrieval metrics (CMC, both mAP variants, mINP), verification figures and
//!   ranked candidate lists;
//! - [`model`]: the CLIP-HandID model (inversion network, BN necks, classifiers, prompt);
//! - [`lr`]: calibrated likelihood ratios (score -> log10 LR), their validation and casework use;
//! - [`loss`]: label-smoothed cross-entropy and supervised contrastive losses;
//! - [`train`]: the training loop, schedule, checkpoints and resume, and training runs from files;
//! - [`retrieval`]: models for retrieval from one file, export, casework and evaluation;
//! - [`provenance`]: SHA-256 and the provenance record of every output;
//! - [`progress`]: the observer through which long calls report (the library prints nothing);
//! - [`demo`]: the synthetic-hands demo;
//! - [`reproduce`]: the paper's Table I: published numbers, the pipeline that reproduces them and
//!   the table with ours beside them.
//!
//! The method, the splits and the metrics: `docs/METHOD.md` in the repository.
#![deny(missing_docs)]

/// The crate's README, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub mod data;
pub mod demo;
pub mod eval;
pub mod loss;
pub mod lr;
pub mod model;
pub mod progress;
pub mod provenance;
pub mod reproduce;
pub mod retrieval;
pub mod train;
