//! clip-handid: identify people from images of their hands with CLIP-HandID, in pure Rust.
//!
//! The workspace's crates, re-exported:
//! - [`clip`]: OpenAI CLIP in Burn (encoders, tokenizer, preprocessing, weights);
//! - [`handid`]: the hand-identification method built on it.
//!
//! [`backend`] picks the compute backend from the Cargo features (`flex` CPU by default,
//! `wgpu`, `cuda`); [`args`] and [`terminal`] are the command line's shared arguments and
//! progress display (the `handid` command and the examples).
#![deny(missing_docs)]

/// The README, compiled as doctests (its Rust examples must build).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub mod args;
pub mod backend;
pub mod embed;
pub mod io;
pub mod terminal;

pub use clip_burn as clip;
pub use handid;
