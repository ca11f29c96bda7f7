//! Large messages crossing the router frame by frame.

use std::collections::VecDeque;

use actix::prelude::*;
use bytes::Bytes;

use bote_amqp::LinkId;

/// The body of a multi-frame delivery still arriving: the ingress (a
/// sender's connection, or the stream from a neighbour router) appends each
/// transfer frame's payload as it comes, and every egress that forwards the
/// delivery (one per multicast copy) sends the chunks on as soon as they are
/// there, so a large message crosses the router frame by frame and is never
/// re-encoded or held whole.
///
/// **Not held whole.** Each reader (an egress forwarding it) opens the
/// stream once ([`Stream::open`]) and reads on from its position
/// ([`Stream::read`]); once as many readers as the stream expects have
/// opened it (one, unless a multicast address made copies:
/// [`Stream::add_readers`]), the chunks every one of them has read are
/// dropped. The router then holds only what its slowest reader has not sent
/// yet. A delivery whose chunks were dropped cannot be sent again from the
/// start ([`Stream::whole`] is false): it is not re-forwarded or resent,
/// and a reader opening it late gets it as aborted.
pub struct Stream {
    state: std::sync::Mutex<StreamState>,
}

impl Default for Stream {
    fn default() -> Self {
        Stream {
            state: std::sync::Mutex::new(StreamState {
                chunks: VecDeque::new(),
                base: 0,
                complete: false,
                aborted: false,
                readers: Vec::new(),
                positions: Vec::new(),
                expected: 1,
            }),
        }
    }
}

type Reader = (Recipient<StreamProgress>, LinkId, u64);

struct StreamState {
    /// Chunks after the first (the first travels as
    /// `RoutedDelivery::message`) not yet read by every reader.
    chunks: VecDeque<Bytes>,
    /// The index (counting from the first chunk after the message's first
    /// part) of `chunks[0]`: how many were dropped.
    base: usize,
    complete: bool,
    aborted: bool,
    /// Readers to wake while the stream goes on.
    readers: Vec<Reader>,
    /// Per reader that opened it (by slot), the index of the next chunk it
    /// reads.
    positions: Vec<usize>,
    /// Readers that will open it: chunks are dropped only once all have.
    expected: usize,
}

impl StreamState {
    /// Drops the chunks every expected reader has read.
    fn trim(&mut self) {
        if self.positions.len() < self.expected {
            return;
        }
        let read_by_all = self.positions.iter().copied().min().unwrap_or(0);
        while self.base < read_by_all && self.chunks.pop_front().is_some() {
            self.base += 1;
        }
    }

    fn from(&self, from: usize, max_bytes: usize) -> StreamRead {
        let start = from.saturating_sub(self.base);
        let mut chunks = Vec::new();
        let mut bytes = 0;
        let mut i = start;
        while let Some(c) = self.chunks.get(i) {
            if !chunks.is_empty() && bytes + c.len() > max_bytes {
                break;
            }
            bytes += c.len();
            chunks.push(c.clone());
            i += 1;
        }
        let all = i >= self.chunks.len();
        StreamRead {
            chunks,
            complete: self.complete && all,
            aborted: self.aborted || from < self.base,
            rest: !all,
        }
    }
}

/// Tells an egress that a stream it forwards has more chunks, or ended.
/// `context` names the egress delivery.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StreamProgress {
    pub link: LinkId,
    pub context: u64,
}

/// What an egress reads of a stream: chunks from its position on, and
/// whether they end the stream (completely, or aborted).
pub struct StreamRead {
    pub chunks: Vec<Bytes>,
    /// The chunks read are the last of a complete message.
    pub complete: bool,
    /// The sender gave up on it (or the chunks this reader needs are gone).
    pub aborted: bool,
    /// More chunks are there already beyond those read (a read with a byte
    /// limit): read again without waiting to be told.
    pub rest: bool,
}

impl Stream {
    /// Ingress: one more frame's payload; `last` when it is the final one.
    pub fn push(&self, chunk: Bytes, last: bool) {
        let readers = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if !chunk.is_empty() {
                s.chunks.push_back(chunk);
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

    fn wake(readers: Vec<Reader>) {
        for (r, link, context) in readers {
            r.do_send(StreamProgress { link, context });
        }
    }

    /// `n` more readers will open the stream (the copies of a multicast
    /// delivery): its chunks are kept until they have read them too.
    pub fn add_readers(&self, n: usize) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.expected += n;
    }

    /// The stream still has every chunk: a delivery of it can be sent again
    /// from the start.
    pub fn whole(&self) -> bool {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.base == 0
    }

    /// Egress: opens the stream as one of its readers, reading from the
    /// first chunk (at most about `max_bytes`); `reader` is told of more
    /// unless the stream has ended. Returns the reader's slot for
    /// [`Stream::read`].
    pub fn open(&self, reader: Reader, max_bytes: usize) -> (usize, StreamRead) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let read = s.from(0, max_bytes);
        let slot = s.positions.len();
        if read.aborted {
            // Nothing more to read for it.
            s.positions.push(usize::MAX);
        } else {
            if !s.complete {
                s.readers.push(reader);
            }
            s.positions.push(read.chunks.len());
        }
        s.trim();
        (slot, read)
    }

    /// Egress: the chunks from index `from` (at most about `max_bytes`) for
    /// the reader in `slot`, which has sent the ones before `from`.
    pub fn read(&self, slot: usize, from: usize, max_bytes: usize) -> StreamRead {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let read = s.from(from, max_bytes);
        if let Some(p) = s.positions.get_mut(slot) {
            *p = from + read.chunks.len();
        }
        s.trim();
        read
    }

    /// Chunks held now (tests).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.chunks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sink;
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    impl Handler<StreamProgress> for Sink {
        type Result = ();
        fn handle(&mut self, _: StreamProgress, _: &mut Context<Self>) {}
    }

    fn link() -> LinkId {
        LinkId {
            session: bote_amqp::SessionId(0),
            handle: 0,
        }
    }

    #[test]
    fn chunks_every_reader_has_read_are_dropped_and_a_late_reader_gets_it_aborted() {
        actix::System::new().block_on(async {
            let sink = Sink.start().recipient();
            let s = Stream::default();
            s.add_readers(1);
            for _ in 0..4 {
                s.push(Bytes::from_static(b"chunk"), false);
            }
            let (a, r) = s.open((sink.clone(), link(), 1), 12);
            assert_eq!((r.chunks.len(), r.rest, r.complete), (2, true, false));
            assert_eq!(s.held(), 4, "one reader of two has not opened it");
            let (b, r) = s.open((sink.clone(), link(), 2), usize::MAX);
            assert_eq!(r.chunks.len(), 4);
            assert_eq!(s.held(), 2, "both have read the first two");
            assert!(!s.whole());
            s.push(Bytes::from_static(b"last"), true);
            let r = s.read(a, 2, usize::MAX);
            assert_eq!((r.chunks.len(), r.complete), (3, true));
            let r = s.read(b, 4, usize::MAX);
            assert_eq!((r.chunks.len(), r.complete), (1, true));
            assert_eq!(s.held(), 0, "the router holds nothing of it now");
            let (_, late) = s.open((sink, link(), 3), usize::MAX);
            assert!(late.aborted, "its beginning is gone");
        });
    }
}
