//! Test support shared by the engine's integration tests.

pub mod pair;
