//! The UPDATE message (RFC 4271 §4.3) and its RFC 7606 error handling.
//!
//! ```text
//! +-----------------------------------------------------+
//! |   Withdrawn Routes Length (2 octets)                |
//! +-----------------------------------------------------+
//! |   Withdrawn Routes (variable)                       |
//! +-----------------------------------------------------+
//! |   Total Path Attribute Length (2 octets)            |
//! +-----------------------------------------------------+
//! |   Path Attributes (variable)                        |
//! +-----------------------------------------------------+
//! |   Network Layer Reachability Information (variable) |
//! +-----------------------------------------------------+
//! ```
//!
//! Decoding keeps the attributes in wire order and with their flags, so a
//! decoded message encodes back to the same bytes. Malformed attributes are
//! sorted by their RFC 7606 action: session-reset errors fail the decode;
//! treat-as-withdraw and attribute-discard errors are recorded on the message
//! ([`UpdateMsg::treat_as_withdraw`], [`UpdateMsg::discarded`]).

use std::net::Ipv4Addr;

use bytes::{BufMut, Bytes, BytesMut};
use nom::bytes::complete::take;
use nom::number::complete::be_u16;
use nom::IResult;

use super::afi::{AfiSafi, Family};
use super::aspath::AsPath;
use super::attribute::{self as attr, decode_value, flags_ok, AttrValue, PathAttr, FLAG_EXTENDED_LENGTH};
use super::community::{Community, ExtCommunity, LargeCommunity};
use super::error::{AttrAction, AttrError, AttrErrorKind, DecodeError};
use super::mp::{MpReach, MpUnreach};
use super::nlri::{decode_nlri, Nlri};
use super::{DecodeCtx, EncodeCtx, HEADER_LEN, MAX_MESSAGE_LEN};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateMsg {
    /// The IPv4 Withdrawn Routes field.
    pub withdrawn: Vec<Nlri>,
    /// Path attributes in wire order.
    pub attrs: Vec<PathAttr>,
    /// The IPv4 NLRI field.
    pub nlri: Vec<Nlri>,
    /// Set when RFC 7606 says to treat every NLRI of this UPDATE as
    /// withdrawn; holds the (first) error that called for it.
    pub treat_as_withdraw: Option<AttrError>,
    /// Attributes dropped under RFC 7606 attribute discard.
    pub discarded: Vec<AttrError>,
}

/// Wraps a raw attribute (flags, type, length, value) as NOTIFICATION data.
fn attr_data(raw: &[u8]) -> Bytes {
    Bytes::copy_from_slice(raw)
}

/// The flags to keep for a decoded attribute: the upper four bits, minus an
/// Extended Length bit the value's size forces anyway, so that a decoded
/// attribute equals one built with [`PathAttr::new`] and encodes identically.
fn stored_flags(flags: u8, len: usize) -> u8 {
    if len > 255 {
        flags & 0xf0 & !FLAG_EXTENDED_LENGTH
    } else {
        flags & 0xf0
    }
}

fn attr_error(code: u8, kind: AttrErrorKind, action: AttrAction, raw: &[u8]) -> AttrError {
    AttrError { type_code: code, kind, action, data: attr_data(raw) }
}

impl UpdateMsg {
    /// Decodes the body (after the 19-octet header).
    pub fn decode(body: &[u8], ctx: &DecodeCtx) -> Result<Self, DecodeError> {
        let fields: IResult<&[u8], (&[u8], &[u8])> = (|i| {
            let (i, wlen) = be_u16(i)?;
            let (i, withdrawn) = take(wlen)(i)?;
            let (i, alen) = be_u16(i)?;
            let (i, attrs) = take(alen)(i)?;
            Ok((i, (withdrawn, attrs)))
        })(body);
        // RFC 7606 §5.1: lengths that overrun the message reset the session.
        let (nlri_field, (withdrawn_field, attr_field)) = fields.map_err(|_| {
            DecodeError::MalformedAttributeList("withdrawn routes or path attribute length overruns the message")
        })?;

        let v4_add_path = ctx.add_path_rx.contains(Family::Ipv4Unicast);
        let withdrawn = decode_nlri(withdrawn_field, Family::Ipv4Unicast, v4_add_path)
            .map_err(|e| DecodeError::InvalidNetworkField(e.reason()))?;
        let nlri = decode_nlri(nlri_field, Family::Ipv4Unicast, v4_add_path)
            .map_err(|e| DecodeError::InvalidNetworkField(e.reason()))?;

        let mut msg = UpdateMsg { withdrawn, attrs: Vec::new(), nlri, treat_as_withdraw: None, discarded: Vec::new() };
        let mut errors: Vec<AttrError> = Vec::new();
        msg.decode_attrs(attr_field, ctx, &mut errors)?;
        msg.check_mandatory(&mut errors);
        msg.check_mp_next_hop(&mut errors);
        // RFC 4760 §3: NEXT_HOP only matters for the IPv4 NLRI field; with
        // none, a bad NEXT_HOP is dropped rather than withdrawing MP NLRI.
        if msg.nlri.is_empty() {
            for e in errors.iter_mut().filter(|e| e.type_code == attr::NEXT_HOP) {
                e.action = AttrAction::AttributeDiscard;
            }
        }

        // RFC 7606 §5.2: with no reachable NLRI there is nothing to treat as
        // withdrawn, so an error that calls for it resets the session.
        if !msg.reaches_anything() {
            for e in errors.iter_mut().filter(|e| e.action == AttrAction::TreatAsWithdraw) {
                e.action = AttrAction::SessionReset;
            }
        }

        for e in errors {
            match e.action {
                AttrAction::SessionReset => return Err(DecodeError::Attribute(e)),
                AttrAction::TreatAsWithdraw => {
                    if msg.treat_as_withdraw.is_none() {
                        msg.treat_as_withdraw = Some(e);
                    }
                }
                AttrAction::AttributeDiscard => msg.discarded.push(e),
            }
        }
        Ok(msg)
    }

    fn decode_attrs(&mut self, mut i: &[u8], ctx: &DecodeCtx, errors: &mut Vec<AttrError>) -> Result<(), DecodeError> {
        let mut seen = [false; 256];
        while !i.is_empty() {
            // RFC 7606 §4: too few octets for a header, or a length that
            // overruns the attribute field, is treat-as-withdraw; the Total
            // Path Attribute Length still locates the NLRI.
            let ext = i[0] & FLAG_EXTENDED_LENGTH != 0;
            let hdr = if ext { 4 } else { 3 };
            if i.len() < hdr {
                errors.push(attr_error(
                    i.get(1).copied().unwrap_or(0),
                    AttrErrorKind::Overrun,
                    AttrAction::TreatAsWithdraw,
                    i,
                ));
                break;
            }
            let (flags, code) = (i[0], i[1]);
            let len = if ext { usize::from(u16::from_be_bytes([i[2], i[3]])) } else { usize::from(i[2]) };
            if i.len() < hdr + len {
                // An overrunning MP_REACH/MP_UNREACH hides NLRI that could
                // not then be withdrawn, so that one resets the session.
                let action = if matches!(code, attr::MP_REACH_NLRI | attr::MP_UNREACH_NLRI) {
                    AttrAction::SessionReset
                } else {
                    AttrAction::TreatAsWithdraw
                };
                errors.push(attr_error(code, AttrErrorKind::Overrun, action, i));
                break;
            }
            let raw = &i[..hdr + len];
            let value = &raw[hdr..];
            i = &i[hdr + len..];

            let is_mp = matches!(code, attr::MP_REACH_NLRI | attr::MP_UNREACH_NLRI);
            if seen[usize::from(code)] {
                // RFC 7606 §3 g: repeated MP attributes reset the session,
                // other repeats are discarded.
                if is_mp {
                    return Err(DecodeError::MalformedAttributeList("MP_REACH_NLRI or MP_UNREACH_NLRI appears twice"));
                }
                errors.push(attr_error(code, AttrErrorKind::Duplicate, AttrAction::AttributeDiscard, raw));
                continue;
            }
            seen[usize::from(code)] = true;

            if !attr::is_known(code) {
                if flags & attr::FLAG_OPTIONAL == 0 {
                    errors.push(attr_error(code, AttrErrorKind::UnrecognizedWellKnown, AttrAction::SessionReset, raw));
                    continue;
                }
                self.attrs.push(PathAttr {
                    flags: stored_flags(flags, len),
                    value: AttrValue::Unknown { type_code: code, value: Bytes::copy_from_slice(value) },
                });
                continue;
            }
            // RFC 7606 §7.9, §7.10: ORIGINATOR_ID and CLUSTER_LIST are for
            // internal peers; from an external one they are discarded,
            // well-formed or not.
            if ctx.ebgp && matches!(code, attr::ORIGINATOR_ID | attr::CLUSTER_LIST) {
                errors.push(attr_error(code, AttrErrorKind::FromExternalPeer, AttrAction::AttributeDiscard, raw));
                continue;
            }
            let action = attr::malformed_action(code, ctx.ebgp);
            if !flags_ok(code, flags) {
                errors.push(attr_error(code, AttrErrorKind::FlagsError, action, raw));
                continue;
            }
            match decode_value(code, value, ctx) {
                Ok(v) => self.attrs.push(PathAttr { flags: stored_flags(flags, len), value: v }),
                Err(kind) => errors.push(attr_error(code, kind, action, raw)),
            }
        }
        Ok(())
    }

    /// Whether the UPDATE announces any route: IPv4 NLRI, or NLRI in an
    /// MP_REACH_NLRI of a family merle decodes.
    fn reaches_anything(&self) -> bool {
        !self.nlri.is_empty() || self.mp_reach().is_some_and(|r| !r.nlri.is_empty())
    }

    /// RFC 7606 §3 d: a missing well-known mandatory attribute withdraws, but
    /// only when the UPDATE announces something.
    fn check_mandatory(&self, errors: &mut Vec<AttrError>) {
        if !self.reaches_anything() {
            return;
        }
        let mut required = vec![attr::ORIGIN, attr::AS_PATH];
        if !self.nlri.is_empty() {
            required.push(attr::NEXT_HOP);
        }
        for code in required {
            let present =
                self.attrs.iter().any(|a| a.type_code() == code) || errors.iter().any(|e| e.type_code == code);
            if !present {
                errors.push(AttrError {
                    type_code: code,
                    kind: AttrErrorKind::MissingWellKnown,
                    action: AttrAction::TreatAsWithdraw,
                    data: Bytes::copy_from_slice(&[code]),
                });
            }
        }
    }

    /// A syntactically fine MP_REACH_NLRI whose next hop cannot be routed
    /// through (unspecified, multicast, loopback) withdraws its NLRI.
    fn check_mp_next_hop(&self, errors: &mut Vec<AttrError>) {
        let Some(r) = self.mp_reach() else { return };
        // The same rules as for NEXT_HOP. (A link-local address alone is
        // allowed: unnumbered sessions send one.)
        let bad = match r.next_hop.addr() {
            std::net::IpAddr::V4(a) => !attr::valid_next_hop(a),
            std::net::IpAddr::V6(a) => a.is_unspecified() || a.is_multicast() || a.is_loopback(),
        };
        if bad && !r.nlri.is_empty() {
            errors.push(AttrError {
                type_code: attr::MP_REACH_NLRI,
                kind: AttrErrorKind::InvalidNextHop,
                action: AttrAction::TreatAsWithdraw,
                data: Bytes::new(),
            });
        }
    }

    /// Encodes the body.
    pub fn encode_body(&self, ctx: &EncodeCtx, buf: &mut BytesMut) {
        let v4_ap = ctx.add_path_tx.contains(Family::Ipv4Unicast);
        let at = buf.len();
        buf.put_u16(0);
        for n in &self.withdrawn {
            n.encode(v4_ap, buf);
        }
        let wlen = buf.len() - at - 2;
        buf[at..at + 2].copy_from_slice(&(wlen as u16).to_be_bytes());
        let at = buf.len();
        buf.put_u16(0);
        for a in &self.attrs {
            a.encode(ctx, buf);
        }
        let alen = buf.len() - at - 2;
        buf[at..at + 2].copy_from_slice(&(alen as u16).to_be_bytes());
        for n in &self.nlri {
            n.encode(v4_ap, buf);
        }
    }

    fn find(&self, code: u8) -> Option<&AttrValue> {
        self.attrs.iter().find(|a| a.type_code() == code).map(|a| &a.value)
    }

    pub fn origin(&self) -> Option<attr::Origin> {
        match self.find(attr::ORIGIN)? {
            AttrValue::Origin(o) => Some(*o),
            _ => None,
        }
    }
    pub fn as_path(&self) -> Option<&AsPath> {
        match self.find(attr::AS_PATH)? {
            AttrValue::AsPath(p) => Some(p),
            _ => None,
        }
    }
    pub fn as4_path(&self) -> Option<&AsPath> {
        match self.find(attr::AS4_PATH)? {
            AttrValue::As4Path(p) => Some(p),
            _ => None,
        }
    }
    /// The real AS path: AS_PATH, merged with AS4_PATH when the peer is a
    /// 2-octet speaker (RFC 6793 §4.2.3). A 4-octet speaker's AS4_PATH is
    /// ignored, as RFC 6793 §4.1 requires.
    ///
    /// Also per RFC 6793 §4.2.3, an AGGREGATOR with an AS other than
    /// AS_TRANS means the route was aggregated by a 2-octet speaker after the
    /// AS4_PATH was built, so AS4_PATH is ignored.
    pub fn effective_as_path(&self, four_octet_session: bool) -> Option<AsPath> {
        let p = self.as_path()?;
        let aggregated_by_old_speaker = self.aggregator().is_some_and(|a| a.asn != u32::from(super::open::AS_TRANS));
        match (four_octet_session, self.as4_path()) {
            (false, Some(as4)) if !aggregated_by_old_speaker => Some(p.merge_as4(as4)),
            _ => Some(p.clone()),
        }
    }
    pub fn aggregator(&self) -> Option<attr::Aggregator> {
        match self.find(attr::AGGREGATOR)? {
            AttrValue::Aggregator(a) => Some(*a),
            _ => None,
        }
    }
    /// The real aggregator: AS4_AGGREGATOR when a 2-octet peer's AGGREGATOR
    /// holds AS_TRANS (RFC 6793 §4.2.3), else AGGREGATOR.
    pub fn effective_aggregator(&self, four_octet_session: bool) -> Option<attr::Aggregator> {
        let a = self.aggregator()?;
        if four_octet_session || a.asn != u32::from(super::open::AS_TRANS) {
            return Some(a);
        }
        match self.find(attr::AS4_AGGREGATOR) {
            Some(AttrValue::As4Aggregator(a4)) => Some(*a4),
            _ => Some(a),
        }
    }
    pub fn next_hop(&self) -> Option<Ipv4Addr> {
        match self.find(attr::NEXT_HOP)? {
            AttrValue::NextHop(a) => Some(*a),
            _ => None,
        }
    }
    pub fn med(&self) -> Option<u32> {
        match self.find(attr::MULTI_EXIT_DISC)? {
            AttrValue::MultiExitDisc(v) => Some(*v),
            _ => None,
        }
    }
    pub fn local_pref(&self) -> Option<u32> {
        match self.find(attr::LOCAL_PREF)? {
            AttrValue::LocalPref(v) => Some(*v),
            _ => None,
        }
    }
    pub fn communities(&self) -> &[Community] {
        match self.find(attr::COMMUNITIES) {
            Some(AttrValue::Communities(c)) => c,
            _ => &[],
        }
    }
    pub fn ext_communities(&self) -> &[ExtCommunity] {
        match self.find(attr::EXTENDED_COMMUNITIES) {
            Some(AttrValue::ExtendedCommunities(c)) => c,
            _ => &[],
        }
    }
    pub fn large_communities(&self) -> &[LargeCommunity] {
        match self.find(attr::LARGE_COMMUNITIES) {
            Some(AttrValue::LargeCommunities(c)) => c,
            _ => &[],
        }
    }
    pub fn originator_id(&self) -> Option<Ipv4Addr> {
        match self.find(attr::ORIGINATOR_ID)? {
            AttrValue::OriginatorId(a) => Some(*a),
            _ => None,
        }
    }
    pub fn cluster_list(&self) -> &[Ipv4Addr] {
        match self.find(attr::CLUSTER_LIST) {
            Some(AttrValue::ClusterList(c)) => c,
            _ => &[],
        }
    }
    pub fn mp_reach(&self) -> Option<&MpReach> {
        match self.find(attr::MP_REACH_NLRI)? {
            AttrValue::MpReachNlri(r) => Some(r),
            _ => None,
        }
    }
    pub fn mp_unreach(&self) -> Option<&MpUnreach> {
        match self.find(attr::MP_UNREACH_NLRI)? {
            AttrValue::MpUnreachNlri(u) => Some(u),
            _ => None,
        }
    }

    /// The End-of-RIB marker's family, if this UPDATE is one (RFC 4724 §2):
    /// an empty UPDATE for IPv4 unicast, or an MP_UNREACH_NLRI with no
    /// withdrawn routes and no other attributes.
    pub fn end_of_rib(&self) -> Option<AfiSafi> {
        // An attribute dropped as malformed was still there: not a marker.
        if !self.withdrawn.is_empty() || !self.nlri.is_empty() || self.treat_as_withdraw.is_some() {
            return None;
        }
        if !self.discarded.is_empty() {
            return None;
        }
        match self.attrs.as_slice() {
            [] => Some(AfiSafi::IPV4_UNICAST),
            [a] => match &a.value {
                AttrValue::MpUnreachNlri(u) if u.withdrawn.is_empty() => Some(u.family.afi_safi()),
                AttrValue::MpUnreachOther(o) if o.rest.is_empty() => Some(o.afi_safi),
                _ => None,
            },
            _ => None,
        }
    }

    /// An End-of-RIB marker for `family`.
    pub fn end_of_rib_marker(family: Family) -> Self {
        match family {
            Family::Ipv4Unicast => Self::default(),
            f => Self {
                attrs: vec![PathAttr::new(AttrValue::MpUnreachNlri(MpUnreach { family: f, withdrawn: vec![] }))],
                ..Self::default()
            },
        }
    }

    /// Every NLRI this UPDATE withdraws, including — under treat-as-withdraw
    /// — the ones it tried to announce.
    pub fn withdrawals(&self) -> Vec<Nlri> {
        let mut v = self.withdrawn.clone();
        if let Some(u) = self.mp_unreach() {
            v.extend_from_slice(&u.withdrawn);
        }
        if self.treat_as_withdraw.is_some() {
            v.extend_from_slice(&self.nlri);
            if let Some(r) = self.mp_reach() {
                v.extend_from_slice(&r.nlri);
            }
        }
        v
    }

    /// Every NLRI this UPDATE announces, with its next hop. Empty under
    /// treat-as-withdraw.
    pub fn announcements(&self) -> Vec<(Nlri, std::net::IpAddr)> {
        if self.treat_as_withdraw.is_some() {
            return Vec::new();
        }
        let mut v = Vec::new();
        if let Some(nh) = self.next_hop() {
            v.extend(self.nlri.iter().map(|n| (*n, std::net::IpAddr::V4(nh))));
        }
        if let Some(r) = self.mp_reach() {
            let nh = r.next_hop.addr();
            v.extend(r.nlri.iter().map(|n| (*n, nh)));
        }
        v
    }

    /// Splits announcements sharing one attribute set into UPDATEs that each
    /// fit in the maximum message size. `attrs` must not contain
    /// MP_REACH_NLRI; for IPv6 (and RFC 8950 IPv4) NLRI pass `mp_next_hop`,
    /// and one is built per message.
    pub fn pack(
        attrs: &[PathAttr],
        family: Family,
        mp_next_hop: Option<super::mp::NextHop>,
        nlri: &[Nlri],
        ctx: &EncodeCtx,
    ) -> Vec<UpdateMsg> {
        let p = Packing::new(attrs, family, mp_next_hop.is_some(), ctx);
        p.runs(nlri)
            .map(|(run, _)| {
                let mut m = UpdateMsg { attrs: attrs.to_vec(), ..Default::default() };
                match mp_next_hop {
                    Some(nh) => m.attrs.insert(
                        0,
                        PathAttr::new(AttrValue::MpReachNlri(MpReach { family, next_hop: nh, nlri: run.to_vec() })),
                    ),
                    None => m.nlri = run.to_vec(),
                }
                m
            })
            .collect()
    }

    /// [`UpdateMsg::pack`] straight to wire bytes, each a whole UPDATE
    /// message with its header: the attributes are encoded once for all the
    /// messages and copied in, the NLRI written once, and no `UpdateMsg` is
    /// built. The bytes are exactly those of the packed messages encoded
    /// one by one.
    pub fn pack_wire(
        attrs: &[PathAttr],
        family: Family,
        mp_next_hop: Option<super::mp::NextHop>,
        nlri: &[Nlri],
        ctx: &EncodeCtx,
    ) -> Vec<Bytes> {
        let p = Packing::new(attrs, family, mp_next_hop.is_some(), ctx);
        p.runs(nlri)
            .map(|(run, used)| {
                let mut buf = BytesMut::with_capacity(p.overhead + used);
                buf.put_slice(&[0xff; 16]);
                buf.put_u16(0);
                buf.put_u8(super::MSG_UPDATE);
                buf.put_u16(0); // no withdrawn routes
                let at = buf.len();
                buf.put_u16(0);
                if let Some(nh) = mp_next_hop {
                    let mp = MpReach { family, next_hop: nh, nlri: run.to_vec() };
                    PathAttr::new(AttrValue::MpReachNlri(mp)).encode(ctx, &mut buf);
                }
                buf.put_slice(&p.base);
                let alen = buf.len() - at - 2;
                buf[at..at + 2].copy_from_slice(&(alen as u16).to_be_bytes());
                if mp_next_hop.is_none() {
                    // The NLRI field is IPv4's: its ADD-PATH setting applies.
                    let v4_ap = ctx.add_path_tx.contains(Family::Ipv4Unicast);
                    for n in run {
                        n.encode(v4_ap, &mut buf);
                    }
                }
                let len = u16::try_from(buf.len()).unwrap_or(u16::MAX);
                buf[16..18].copy_from_slice(&len.to_be_bytes());
                buf.freeze()
            })
            .collect()
    }

    /// Splits withdrawals into UPDATEs that fit in the maximum message size.
    pub fn pack_withdrawals(family: Family, nlri: &[Nlri], ctx: &EncodeCtx) -> Vec<UpdateMsg> {
        let ap = ctx.add_path_tx.contains(family);
        let room = MAX_MESSAGE_LEN - HEADER_LEN - 4 - 4 - 3;
        let mut out = Vec::new();
        let mut batch = Vec::new();
        let mut used = 0;
        let mut flush = |batch: &mut Vec<Nlri>| {
            if batch.is_empty() {
                return;
            }
            let w = std::mem::take(batch);
            out.push(match family {
                Family::Ipv4Unicast => UpdateMsg { withdrawn: w, ..Default::default() },
                f => UpdateMsg {
                    attrs: vec![PathAttr::new(AttrValue::MpUnreachNlri(MpUnreach { family: f, withdrawn: w }))],
                    ..Default::default()
                },
            });
        };
        for n in nlri {
            let l = n.encoded_len(ap);
            if used + l > room {
                flush(&mut batch);
                used = 0;
            }
            batch.push(*n);
            used += l;
        }
        flush(&mut batch);
        out
    }
}

/// The attributes of one packed group, encoded once, and the room they
/// leave for NLRI in one message.
struct Packing {
    base: BytesMut,
    overhead: usize,
    room: usize,
    add_path: bool,
}

impl Packing {
    fn new(attrs: &[PathAttr], family: Family, mp: bool, ctx: &EncodeCtx) -> Self {
        let mut base = BytesMut::new();
        for a in attrs {
            a.encode(ctx, &mut base);
        }
        // Header, two length fields, attributes, and for MP the attribute
        // header (4 with extended length) plus AFI/SAFI, next hop, reserved.
        let overhead = HEADER_LEN + 4 + base.len() + if mp { 4 + 3 + 33 + 1 } else { 0 };
        let room = MAX_MESSAGE_LEN.saturating_sub(overhead).max(1);
        Self { base, overhead, room, add_path: ctx.add_path_tx.contains(family) }
    }

    /// `nlri` cut into runs that each fit one message, with the octets each
    /// run's NLRI take.
    fn runs<'n>(&self, nlri: &'n [Nlri]) -> impl Iterator<Item = (&'n [Nlri], usize)> + 'n {
        let (room, ap) = (self.room, self.add_path);
        let mut rest = nlri;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let (mut end, mut used) = (0, 0);
            for n in rest {
                let l = n.encoded_len(ap);
                if end > 0 && used + l > room {
                    break;
                }
                used += l;
                end += 1;
            }
            let (run, tail) = rest.split_at(end);
            rest = tail;
            Some((run, used))
        })
    }
}
