//! Fuzzes the path attribute decoder alone: the input (after a context
//! byte) is an UPDATE's path attribute field, followed by one IPv4 NLRI so
//! that errors which treat the UPDATE as a withdraw have something to
//! withdraw. RFC 7606 decides every outcome: the decoder must never panic,
//! and an UPDATE it accepts without errors must survive a round trip.
#![no_main]

use bgpd::packet::{Family, Message};
use libfuzzer_sys::fuzz_target;

#[path = "ctx.rs"]
mod ctx;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, attrs)) = data.split_first() else { return };
    let attrs = &attrs[..attrs.len().min(4000)];
    let (dctx, ectx) = ctx::select(sel);
    let nlri: &[u8] =
        if dctx.add_path_rx.contains(Family::Ipv4Unicast) { &[0, 0, 0, 1, 24, 10, 9, 0] } else { &[24, 10, 9, 0] };
    let mut body = vec![0, 0];
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(attrs);
    body.extend_from_slice(nlri);
    let mut msg = vec![0xff; 16];
    msg.extend_from_slice(&((body.len() + 19) as u16).to_be_bytes());
    msg.push(2);
    msg.extend_from_slice(&body);
    let Ok(m) = Message::decode(&msg, &dctx) else { return };
    let Message::Update(u) = &m else { panic!("an UPDATE decoded as something else") };
    let _ = (u.withdrawals(), u.announcements(), u.effective_as_path(dctx.four_octet_as), u.end_of_rib());
    if u.treat_as_withdraw.is_none() && u.discarded.is_empty() {
        let bytes = m.encode(&ectx);
        if bytes.len() <= 4096 {
            let again = Message::decode(&bytes, &dctx).expect("re-encoded UPDATE must decode");
            assert_eq!(again, m, "decode(encode(m)) != m");
        }
    }
});
