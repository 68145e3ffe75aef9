//! CLIP-HandID: identify people from images of their hands.
//!
//! - [`data`]: the 11k Hands and PolyU HD datasets, folder-per-identity datasets, seeded
//!   split protocols and split manifests;
//! - [`eval`]: retrieval metrics (CMC, both mAP variants, mINP), verification figures and
//!   ranked candidate lists;
//! - [`model`]: the CLIP-HandID model (inversion network, BN necks, classifiers, prompt);
//! - [`lr`]: calibrated likelihood ratios (score -> log10 LR), their validation and casework use;
//! - [`loss`]: label-smoothed cross-entropy and supervised contrastive losses;
//! - [`train`]: the training loop, schedule, checkpoints and resume;
//! - [`reproduce`]: the paper's Table I: published numbers, the pipeline that reproduces them and
//!   the table with ours beside them.
#![deny(missing_docs)]

pub mod data;
pub mod eval;
pub mod loss;
pub mod lr;
pub mod model;
pub mod reproduce;
pub mod train;
