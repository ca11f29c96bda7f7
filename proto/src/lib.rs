//! Bote's router-to-router protocol: the versioned protobuf schema
//! (`proto/bote/v1/inter_router.proto`, documented field by field) and the
//! tonic/prost code generated from it.
//!
//! One bidirectional stream per neighbour pair carries batches of control
//! frames (hello, link-state updates and requests, address updates, digests
//! and snapshots) and data frames (transfers, dispositions, per-address
//! credit).

/// Version 1 of the protocol (`package bote.v1`).
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("bote.v1");
}
