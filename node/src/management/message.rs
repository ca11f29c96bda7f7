//! The request and reply messages: `bote_amqp::management`, where the
//! client side (botectl) finds them too.

pub use bote_amqp::management::*;
