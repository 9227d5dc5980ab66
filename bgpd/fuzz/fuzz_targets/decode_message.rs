//! Fuzzes the message decoder under every negotiated context.
//!
//! The first input byte picks the context (4-octet AS, ADD-PATH per family,
//! extended next hop, eBGP); the rest is framed and decoded. Any message
//! that decodes without RFC 7606 errors must encode, and decode again to the
//! same value.
#![no_main]

use bgpd::packet::{frame_len, Message};
use libfuzzer_sys::fuzz_target;

#[path = "ctx.rs"]
mod ctx;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let (dctx, ectx) = ctx::select(sel);
    // Also exercise the framer on the raw stream.
    let _ = frame_len(rest);
    let mut msg = vec![0xff; 16];
    // `rest` starts at the type octet: the length counts marker and length too.
    let len = (rest.len() + 18).min(4096);
    msg.extend_from_slice(&(len as u16).to_be_bytes());
    msg.extend_from_slice(&rest[..len - 18]);
    let Ok(m) = Message::decode(&msg, &dctx) else { return };
    if let Some(n) = match &m {
        Message::Notification(n) => Some(n),
        _ => None,
    } {
        let _ = n.describe();
    }
    // Malformed attributes were dropped (RFC 7606), so only clean messages
    // can be compared after a round trip.
    let clean = match &m {
        Message::Update(u) => u.treat_as_withdraw.is_none() && u.discarded.is_empty(),
        _ => true,
    };
    let bytes = m.encode(&ectx);
    if clean && bytes.len() <= 4096 {
        let again = Message::decode(&bytes, &dctx).expect("re-encoded message must decode");
        assert_eq!(again, m, "decode(encode(m)) != m");
    }
});
