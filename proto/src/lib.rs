//! Bote's router-to-router protocol: the versioned protobuf schema
//! (`proto/bote/v1/inter_router.proto`, documented field by field) and the
//! tonic/prost code generated from it.
//!
//! One bidirectional stream per neighbour pair carries batches of control
//! frames (hello, link-state updates and requests, address updates, digests
//! and snapshots) and data frames (transfers, dispositions, per-address
//! credit).
//!
//! `Batch`, the message every call carries, is written by hand (module
//! `batch`): the same wire form, each frame sized once.

mod batch;

/// Version 1 of the protocol (`package bote.v1`).
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("bote.v1");
    /// `bote.v1.Batch`, written by hand ([`crate::batch`]'s doc says why).
    pub use crate::batch::Batch;
}
