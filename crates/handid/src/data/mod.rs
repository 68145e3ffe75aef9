//! Datasets and split protocols.
