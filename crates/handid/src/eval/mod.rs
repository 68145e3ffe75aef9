//! Retrieval evaluation.
