//! Bote's router-to-router protocol: the versioned protobuf schema
//! (`proto/bote/v1/*.proto`) and the tonic/prost code generated from it.
//!
//! It will carry, on one bidirectional stream per neighbour pair, the control
//! frames of the link-state protocol (hello, link-state updates and requests,
//! address updates and digests) and the data frames (transfers, dispositions,
//! per-address credit), batched several per gRPC message. The schema lands
//! with the mesh issue; until then this crate is empty.
