//! clip-handid: identify people from images of their hands with CLIP-HandID, in pure Rust.
//!
//! The workspace's crates, re-exported:
//! - [`clip`]: OpenAI CLIP in Burn (encoders, tokenizer, preprocessing, weights);
//! - [`handid`]: the hand-identification method built on it.
//!
//! [`backend`] picks the compute backend from the Cargo features (`flex` CPU by default,
//! `wgpu`, `cuda`).
#![deny(missing_docs)]

pub mod backend;
pub mod embed;
pub mod io;

pub use clip_burn as clip;
pub use handid;
