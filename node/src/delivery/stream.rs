//! Large messages crossing the router frame by frame.

use actix::prelude::*;
use bytes::Bytes;

use bote_amqp::LinkId;

/// The body of a multi-frame delivery still arriving: the ingress connection
/// appends each transfer frame's payload as it comes, and every egress that
/// forwards the delivery (one per multicast copy) sends the chunks on as soon
/// as they are there, so a large message crosses the router frame by frame
/// and is never re-encoded or held whole.
#[derive(Default)]
pub struct Stream {
    state: std::sync::Mutex<StreamState>,
}

#[derive(Default)]
struct StreamState {
    /// Chunks after the first (the first travels as `RoutedDelivery::message`).
    chunks: Vec<Bytes>,
    complete: bool,
    aborted: bool,
    readers: Vec<(Recipient<StreamProgress>, LinkId, u64)>,
}

/// Tells an egress connection that a stream it forwards has more chunks, or
/// ended. `context` names the egress delivery.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StreamProgress {
    pub link: LinkId,
    pub context: u64,
}

/// What an egress reads of a stream: the chunks from its position on, and
/// whether the stream ended (completely, or aborted).
pub struct StreamRead {
    pub chunks: Vec<Bytes>,
    pub complete: bool,
    pub aborted: bool,
}

impl Stream {
    /// Ingress: one more frame's payload; `last` when it is the final one.
    pub fn push(&self, chunk: Bytes, last: bool) {
        let readers = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if !chunk.is_empty() {
                s.chunks.push(chunk);
            }
            s.complete |= last;
            s.readers.clone()
        };
        Self::wake(readers);
    }

    /// Ingress: the sender aborted the delivery (or its link went away).
    pub fn abort(&self) {
        let readers = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if s.complete {
                return;
            }
            s.aborted = true;
            s.readers.clone()
        };
        Self::wake(readers);
    }

    fn wake(readers: Vec<(Recipient<StreamProgress>, LinkId, u64)>) {
        for (r, link, context) in readers {
            r.do_send(StreamProgress { link, context });
        }
    }

    /// Egress: the chunks from index `from`; registers the reader to be told
    /// of more unless the stream has ended.
    pub fn read(
        &self,
        from: usize,
        reader: Option<(Recipient<StreamProgress>, LinkId, u64)>,
    ) -> StreamRead {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let read = StreamRead {
            chunks: s.chunks.get(from..).unwrap_or_default().to_vec(),
            complete: s.complete,
            aborted: s.aborted,
        };
        if let Some(r) = reader
            && !s.complete
            && !s.aborted
        {
            s.readers.push(r);
        }
        read
    }
}
