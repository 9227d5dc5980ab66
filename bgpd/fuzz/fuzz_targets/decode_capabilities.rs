//! Fuzzes the OPEN message and its capability list (RFC 5492): huge,
//! truncated or repeated capabilities must give an error or a value, never
//! a panic; and negotiation against merled's own capabilities must hold up
//! whatever the peer offers.
#![no_main]

use bgpd::packet::{AfiSafi, Capability, OpenMsg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Capability::decode_list(data);
    let Ok(open) = OpenMsg::decode(data) else { return };
    let local = vec![
        Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
        Capability::Multiprotocol(AfiSafi::IPV6_UNICAST),
        Capability::RouteRefresh,
        Capability::FourOctetAs(64512),
    ];
    let _ = bgpd::fsm::negotiate(64512, 90, &local, &open);
});
