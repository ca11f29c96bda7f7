//! Fuzzes `decode_frame` over arbitrary bytes: it must never panic, and a
//! frame it returns must have been taken whole off the front of the buffer.
#![no_main]

use bote_amqp::decode_frame;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let before = buf.len();
    if let Ok(Some(frame)) = decode_frame(&mut buf, 1 << 20) {
        assert!(buf.len() < before);
        assert!(frame.payload.len() <= before);
    }
});
