//! `bote.v1.Batch`, written by hand over the generated frames: the one
//! message every inter-router gRPC call carries, so its encoding is on the
//! data plane's hot path.
//!
//! The wire form is exactly the schema's (`repeated Frame frames = 1`);
//! what differs from the generated code is when lengths are computed.
//! Generated code walks each frame's fields to size it every time a length
//! is asked for: once for the whole batch (`Message::encode` checks room
//! first), then again for each frame's length prefix and again for the
//! prefix of the message inside it, and the router asked twice more to count
//! bytes on the stream. [`Batch::new`] sizes each frame once and keeps the
//! sizes, so encoding walks a frame once to size it and once to write it, and
//! [`Batch::encoded_len`] is a field read. A decoded batch keeps the size it
//! was read with ([`Batch::wire_len`]); its frames are read by the generated
//! code (reading transfers by hand was tried and was slower, and reserving
//! room for the frames ahead made no difference: `benches/batch.rs`).

use bytes::{Buf, BufMut};
use prost::encoding::{
    DecodeContext, WireType, encode_key, encode_varint, encoded_len_varint, key_len, message,
    skip_field,
};
use prost::{DecodeError, Message};

use crate::v1::Frame;
use crate::v1::frame::Kind;

/// A group of frames sent together in one gRPC message, processed in order.
#[derive(Clone, Default)]
pub struct Batch {
    frames: Vec<Frame>,
    /// Per frame of a batch made by [`Batch::new`]: the size of the message
    /// its `kind` holds (the frame's own size follows from it); `len` is
    /// then the encoded size. `None` for a decoded batch, whose frames are
    /// sized again if it is re-encoded.
    inner: Option<Vec<u32>>,
    /// The size on the wire: encoded (a batch made by [`Batch::new`]) or
    /// read (a decoded batch).
    len: usize,
}

/// Does the same to the message of every frame kind, and gives its field
/// number with the result.
macro_rules! kind_message {
    ($kind:expr, $m:ident => $body:expr) => {
        match $kind {
            Kind::Hello($m) => (1u32, $body),
            Kind::LinkStateUpdate($m) => (2, $body),
            Kind::LinkStateRequest($m) => (3, $body),
            Kind::AddressUpdate($m) => (4, $body),
            Kind::Digest($m) => (5, $body),
            Kind::AddressRequest($m) => (6, $body),
            Kind::AddressSnapshot($m) => (7, $body),
            Kind::Transfer($m) => (16, $body),
            Kind::Disposition($m) => (17, $body),
            Kind::Credit($m) => (18, $body),
            Kind::RoutedLink($m) => (19, $body),
        }
    };
}

/// The field number of a frame kind (`Frame.kind`'s oneof).
fn kind_tag(kind: &Kind) -> u32 {
    kind_message!(kind, _m => ()).0
}

/// The size of the message inside `kind`.
fn inner_len(kind: &Kind) -> usize {
    kind_message!(kind, m => m.encoded_len()).1
}

/// A frame's encoded size (without its own key and length prefix) from the
/// size of the message inside it.
fn frame_len(kind: Option<&Kind>, inner: usize) -> usize {
    kind.map_or(0, |kind| {
        key_len(kind_tag(kind)) + encoded_len_varint(inner as u64) + inner
    })
}

/// A frame's size with its key (`frames`, field 1) and length prefix.
fn framed(len: usize) -> usize {
    key_len(1) + encoded_len_varint(len as u64) + len
}

impl Batch {
    /// A batch of `frames`, each sized once here.
    pub fn new(frames: Vec<Frame>) -> Batch {
        let mut inner = Vec::with_capacity(frames.len());
        let mut len = 0;
        for frame in &frames {
            let n = frame.kind.as_ref().map_or(0, inner_len);
            inner.push(n as u32);
            len += framed(frame_len(frame.kind.as_ref(), n));
        }
        Batch {
            frames,
            inner: Some(inner),
            len,
        }
    }

    /// The frames, in order.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// The batch's size on the wire: as it is sent (made by [`Batch::new`])
    /// or as it was read (decoded, unknown fields included), without a walk
    /// over its frames.
    pub fn wire_len(&self) -> usize {
        self.len
    }

    /// The frames, taken out of the batch.
    pub fn into_frames(self) -> Vec<Frame> {
        self.frames
    }
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("frames", &self.frames)
            .finish()
    }
}

impl PartialEq for Batch {
    fn eq(&self, other: &Batch) -> bool {
        self.frames == other.frames
    }
}

impl Message for Batch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for (i, frame) in self.frames.iter().enumerate() {
            encode_key(1, WireType::LengthDelimited, buf);
            let Some(kind) = &frame.kind else {
                encode_varint(0, buf);
                continue;
            };
            let inner = match &self.inner {
                Some(sizes) => sizes[i] as usize,
                None => inner_len(kind),
            };
            encode_varint(frame_len(Some(kind), inner) as u64, buf);
            encode_key(kind_tag(kind), WireType::LengthDelimited, buf);
            encode_varint(inner as u64, buf);
            kind_message!(kind, m => m.encode_raw(buf));
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if tag != 1 {
            let before = buf.remaining();
            skip_field(wire_type, tag, buf, ctx)?;
            self.len += key_len(tag) + before - buf.remaining();
            return Ok(());
        }
        let before = buf.remaining();
        let mut frame = Frame::default();
        message::merge(wire_type, &mut frame, buf, ctx)?;
        let read = before - buf.remaining();
        self.frames.push(frame);
        // Sizes kept from `new` no longer describe the frames.
        self.inner = None;
        self.len += key_len(1) + read;
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        if self.inner.is_some() {
            return self.len;
        }
        self.frames
            .iter()
            .map(|f| {
                let inner = f.kind.as_ref().map_or(0, inner_len);
                framed(frame_len(f.kind.as_ref(), inner))
            })
            .sum()
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.inner = None;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Disposition, Hello, Outcome, TraceContext, Transfer, outcome};

    fn frames() -> Vec<Frame> {
        let transfer = |id: u64, size: usize| Frame {
            kind: Some(Kind::Transfer(Transfer {
                delivery_id: id,
                address: "queue.a".into(),
                message: bytes::Bytes::from(vec![0x53; size]),
                priority: 4,
                ingress_router: "Router.A".into(),
                trace: vec!["Router.A".into(), "Router.B".into()],
                trace_context: id.is_multiple_of(2).then(|| TraceContext {
                    traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
                    tracestate: String::new(),
                }),
                hops_left: 31,
                ingress_sequence: id << 20,
                ..Transfer::default()
            })),
        };
        vec![
            Frame {
                kind: Some(Kind::Hello(Hello {
                    router_id: "Router.A".into(),
                    instance: 7,
                    accepts_same_route: true,
                    ..Hello::default()
                })),
            },
            transfer(1, 100),
            transfer(2, 0),
            transfer(300, 70_000),
            Frame { kind: None },
            Frame {
                kind: Some(Kind::Disposition(Disposition {
                    delivery_id: 1,
                    outcome: Some(Outcome {
                        kind: Some(outcome::Kind::Accepted(Default::default())),
                    }),
                    settled: true,
                    last_delivery_id: 2,
                })),
            },
        ]
    }

    /// What the generated code would write for `repeated Frame frames = 1`.
    fn generated(frames: &[Frame]) -> Vec<u8> {
        let mut out = Vec::new();
        message::encode_repeated(1, frames, &mut out);
        out
    }

    #[test]
    fn a_batch_encodes_byte_for_byte_as_the_generated_code_and_knows_its_size() {
        let frames = frames();
        let batch = Batch::new(frames.clone());
        let wire = batch.encode_to_vec();
        assert_eq!(wire, generated(&frames));
        assert_eq!(
            (batch.encoded_len(), batch.wire_len()),
            (wire.len(), wire.len())
        );
        assert_eq!(Batch::new(Vec::new()).encode_to_vec(), Vec::<u8>::new());
    }

    #[test]
    fn a_decoded_batch_has_the_frames_and_the_size_it_was_read_with() {
        let frames = frames();
        let wire = generated(&frames);
        let back = Batch::decode(bytes::Bytes::from(wire.clone())).expect("decode batch");
        assert_eq!(back.frames(), &frames[..]);
        assert_eq!(
            (back.wire_len(), back.encoded_len()),
            (wire.len(), wire.len())
        );
        // Re-encoded (its frames sized again), it is the same bytes.
        assert_eq!(back.encode_to_vec(), wire);
    }

    #[test]
    fn unknown_fields_are_skipped_and_bad_input_is_an_error_never_a_panic() {
        let mut wire = Vec::new();
        encode_key(9, WireType::Varint, &mut wire);
        encode_varint(5, &mut wire);
        wire.extend(generated(&frames()[..2]));
        let back = Batch::decode(&wire[..]).expect("decode with an unknown field");
        assert_eq!(back.frames(), &frames()[..2]);
        // Read with the unknown field, re-encoded without it.
        assert_eq!(back.wire_len(), wire.len());
        assert_eq!(back.encoded_len(), back.encode_to_vec().len());
        assert_eq!(back.encode_to_vec(), generated(&frames()[..2]));
        for cut in 0..wire.len() {
            let _ = Batch::decode(&wire[..cut]);
        }
        let short = Batch::decode(&[0x0a, 0x7f][..]).expect_err("a frame cut short");
        assert!(short.to_string().contains("buffer underflow"), "{short}");
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let n = (state % 64) as usize;
            let bytes: Vec<u8> = (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = Batch::decode(&bytes[..]);
        }
    }
}
