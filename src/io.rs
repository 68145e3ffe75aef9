//! File writing that never leaves a half-written file behind, and the up-front check that an
//! output location is writable (from `clip-burn`).

pub use clip_burn::io::{check_output_dir, check_output_file, write_atomic, write_atomic_with};
