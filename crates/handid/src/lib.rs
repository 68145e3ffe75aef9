//! CLIP-HandID: identify people from images of their hands.
//!
//! - [`data`]: the 11k Hands and PolyU HD datasets, folder-per-identity datasets, seeded
//!   split protocols and split manifests;
//! - [`eval`]: retrieval metrics (CMC, both mAP variants, mINP), verification figures and
//!   ranked candidate lists.
#![deny(missing_docs)]

pub mod data;
pub mod eval;
