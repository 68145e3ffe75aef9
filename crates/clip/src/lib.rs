//! OpenAI CLIP in [Burn](https://burn.dev): Vision Transformer and ModifiedResNet image encoders,
//! the causal text transformer, CLIP's BPE tokenizer, torchvision-compatible preprocessing, and
//! loading of OpenAI-format safetensors checkpoints.
//!
//! Every module is generic over the Burn backend. Outputs match PyTorch (open_clip) on the same
//! weights; see the parity tests in the repository.
//!
//! ```no_run
//! use burn::backend::Flex;
//! use clip_burn::Clip;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = Default::default();
//! let (model, config) = Clip::<Flex>::from_safetensors("ViT-B-16.safetensors".as_ref(), &device)?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

/// The crate's README, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub mod attention;
pub mod config;
mod error;
pub mod fused;
pub mod init;
pub mod io;
mod model;
pub mod preprocess;
pub mod text;
pub mod tokenizer;
mod trace;
pub mod vision;
pub mod weights;

pub use config::{ClipConfig, ResNetConfig, TextConfig, VisionConfig, VitConfig};
pub use error::ClipError;
pub use model::Clip;
pub use trace::Trace;
