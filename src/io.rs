//! File writing that never leaves a half-written file behind (from `clip-burn`).

pub use clip_burn::io::{write_atomic, write_atomic_with};
