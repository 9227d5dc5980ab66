//! The negotiated context a fuzz input's first byte selects: 4-octet AS,
//! ADD-PATH per family, extended next hop per family, eBGP, first-AS
//! enforcement. Shared by the BGP decoder targets.

use bgpd::packet::{DecodeCtx, EncodeCtx, Family, FamilySet};

fn set(bits: u8) -> FamilySet {
    let mut s = FamilySet::EMPTY;
    if bits & 1 != 0 {
        s.insert(Family::Ipv4Unicast);
    }
    if bits & 2 != 0 {
        s.insert(Family::Ipv6Unicast);
    }
    s
}

/// The decode context `sel` names, and the encode context that matches it.
pub fn select(sel: u8) -> (DecodeCtx, EncodeCtx) {
    let dctx = DecodeCtx {
        four_octet_as: sel & 1 != 0,
        add_path_rx: set(sel >> 1),
        extended_next_hop: set(sel >> 3),
        ebgp: sel & 0x20 != 0,
        enforce_first_as: (sel & 0x40 != 0).then_some(65001),
    };
    let ectx = EncodeCtx { four_octet_as: dctx.four_octet_as, add_path_tx: dctx.add_path_rx };
    (dctx, ectx)
}
