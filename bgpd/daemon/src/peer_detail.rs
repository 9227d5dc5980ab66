//! What `merlectl show peer` says of a session beyond its state: message
//! counts, the last NOTIFICATION each way, the negotiated capabilities,
//! and a likely cause when a session stays down. All pure; the peer task
//! calls these and merled's control socket adds the kernel's TCP MD5
//! counters.

use bgpd::fsm::Negotiated;
use bgpd::packet::{Message, NotificationMsg};

use crate::api::{Capabilities, MessageCounts, Notice, PeerStatus};

/// Counts one message by type.
pub fn count(c: &mut MessageCounts, m: &Message) {
    match m {
        Message::Open(_) => c.open += 1,
        Message::Update(_) => c.update += 1,
        Message::Notification(_) => c.notification += 1,
        Message::Keepalive => c.keepalive += 1,
        Message::RouteRefresh(_) => c.route_refresh += 1,
    }
}

pub fn notice(m: &NotificationMsg, at_unix: u64) -> Notice {
    Notice { code: m.code, subcode: m.subcode, text: m.describe(), at_unix }
}

pub fn capabilities(n: &Negotiated) -> Capabilities {
    let names = |s: bgpd::packet::FamilySet| s.iter().map(|f| f.to_string()).collect::<Vec<_>>();
    Capabilities {
        families: names(n.families),
        four_octet_as: n.four_octet_as,
        route_refresh: n.route_refresh,
        enhanced_route_refresh: n.enhanced_route_refresh,
        graceful_restart: n.graceful_restart,
        peer_restart_time: n.peer_graceful_restart.as_ref().map(|g| g.restart_time),
        add_path_receive: names(n.add_path_rx),
        add_path_send: names(n.add_path_tx),
        extended_next_hop_receive: names(n.extended_next_hop_rx),
        extended_next_hop_send: names(n.extended_next_hop_tx),
    }
}

/// The kernel's TCP MD5 (RFC 2385) counters, from `TcpExt` in
/// `/proc/net/netstat`. They count for the whole network namespace, not
/// per peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Md5Counters {
    /// A segment without a signature where a key is configured.
    pub not_found: u64,
    /// A signed segment where no key is configured.
    pub unexpected: u64,
    /// A signature that does not verify: the keys differ.
    pub failure: u64,
}

impl Md5Counters {
    pub fn since(&self, earlier: &Md5Counters) -> Md5Counters {
        Md5Counters {
            not_found: self.not_found.saturating_sub(earlier.not_found),
            unexpected: self.unexpected.saturating_sub(earlier.unexpected),
            failure: self.failure.saturating_sub(earlier.failure),
        }
    }
}

/// Reads the counters from `/proc/net/netstat`'s text: a `TcpExt:` line
/// of names followed by a `TcpExt:` line of values.
pub fn parse_netstat(text: &str) -> Option<Md5Counters> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().skip(1).collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().skip(1).collect();
    if names.len() != values.len() {
        return None;
    }
    let get = |key: &str| -> Option<u64> {
        let i = names.iter().position(|n| *n == key)?;
        values[i].parse().ok()
    };
    Some(Md5Counters {
        not_found: get("TCPMD5NotFound")?,
        unexpected: get("TCPMD5Unexpected")?,
        failure: get("TCPMD5Failure")?,
    })
}

/// This network namespace's counters (merled's own).
pub fn read_md5() -> Option<Md5Counters> {
    parse_netstat(&std::fs::read_to_string("/proc/net/netstat").ok()?)
}

/// What most likely keeps a session that is not Established down, from
/// what the peer and the kernel said: `md5` is how much the node's MD5
/// counters rose over the last `window_s` seconds.
pub fn likely_cause(p: &PeerStatus, local_as: u32, md5: Md5Counters, window_s: u64) -> Option<String> {
    if p.state == "Established" {
        return None;
    }
    let d = &p.detail;
    if d.password && md5.failure > 0 {
        return Some(format!(
            "password mismatch: TCP MD5 signatures fail to verify on this node (TCPMD5Failure +{} in {window_s} s); \
             the peer signs with a different password",
            md5.failure
        ));
    }
    if d.password && md5.not_found > 0 {
        return Some(format!(
            "the peer sends no TCP MD5 signature (TCPMD5NotFound +{} in {window_s} s): it has no password set for \
             this session",
            md5.not_found
        ));
    }
    if !d.password && md5.unexpected > 0 {
        return Some(format!(
            "segments arrive signed with TCP MD5 (TCPMD5Unexpected +{} in {window_s} s) but no password is set \
             here: the peer has one; set `password` for it",
            md5.unexpected
        ));
    }
    // What the peer refused in our OPEN (RFC 4271 §6.2).
    if let Some(n) = &d.last_notification_received {
        let why = match (n.code, n.subcode) {
            (2, 2) => Some(format!(
                "the peer refused our OPEN with Bad Peer AS: it expects an AS other than ours ({local_as})"
            )),
            (2, 3) => Some("the peer refused our OPEN with Bad BGP Identifier: the router ids clash".to_owned()),
            (2, 6) => Some("the peer refused our hold time (Unacceptable Hold Time)".to_owned()),
            (2, 7) | (2, 4) => Some("the peer refused a capability merle sent: see the NOTIFICATION's data".to_owned()),
            (6, 2) | (6, 4) => Some("the peer shut the session down administratively".to_owned()),
            (6, 3) => Some("the peer has no neighbour configured for this node (Peer De-configured)".to_owned()),
            (6, 5) => Some(
                "the peer rejected the connection (Connection Rejected): is this node configured there?".to_owned(),
            ),
            _ => None,
        };
        if why.is_some() {
            return why;
        }
    }
    if let Some(n) = &d.last_notification_sent {
        if n.code == 2 && n.subcode == 2 {
            return Some(format!("the peer's OPEN carried another AS than the configured {}", p.as_number));
        }
    }
    let err = p.last_error.as_deref().unwrap_or("");
    if err.contains("Connection refused") {
        return Some(format!(
            "nothing accepts BGP at {}:{} (connection refused): the peer's speaker is down or does not listen there",
            p.address, p.port
        ));
    }
    if err.contains("timed out") {
        return Some(
            "no answer to our connections: the address is unreachable, a firewall drops port 179, or the peer \
             has TCP MD5 set and drops unsigned segments without a trace here"
                .to_owned(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::api::PeerDetail;

    const NETSTAT: &str = "TcpExt: SyncookiesSent TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure TCPSackShifted\n\
                           TcpExt: 0 3 4 5 9\n\
                           IpExt: InNoRoutes\nIpExt: 0\n";

    fn peer(state: &str, password: bool) -> PeerStatus {
        PeerStatus {
            address: "10.0.0.2".into(),
            port: 179,
            as_number: 65001,
            state: state.into(),
            detail: PeerDetail { password, ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn the_md5_counters_are_read_by_name_and_differences_do_not_underflow() {
        let c = parse_netstat(NETSTAT).unwrap();
        assert_eq!(c, Md5Counters { not_found: 3, unexpected: 4, failure: 5 });
        assert_eq!(parse_netstat("TcpExt: A B\nTcpExt: 1\n"), None, "ragged lines");
        assert_eq!(parse_netstat("TcpExt: A\nTcpExt: 1\n"), None, "no MD5 counters");
        let later = Md5Counters { not_found: 3, unexpected: 9, failure: 2 };
        assert_eq!(later.since(&c), Md5Counters { not_found: 0, unexpected: 5, failure: 0 });
        // This machine's own file parses.
        if std::path::Path::new("/proc/net/netstat").exists() {
            assert!(read_md5().is_some());
        }
    }

    #[test]
    fn a_password_mismatch_is_named_from_the_kernel_counters_and_only_for_a_session_that_is_down() {
        let failing = Md5Counters { failure: 7, ..Default::default() };
        let c = likely_cause(&peer("Active", true), 64512, failing, 60).unwrap();
        assert!(c.starts_with("password mismatch") && c.contains("TCPMD5Failure +7 in 60 s"), "{c}");
        assert_eq!(likely_cause(&peer("Established", true), 64512, failing, 60), None);
        let c = likely_cause(&peer("Connect", true), 64512, Md5Counters { not_found: 2, ..Default::default() }, 60);
        assert!(c.unwrap().contains("no password set"));
        let c = likely_cause(&peer("Active", false), 64512, Md5Counters { unexpected: 1, ..Default::default() }, 60);
        assert!(c.unwrap().contains("no password is set here"));
        // Counters that do not fit the configuration say nothing of it.
        assert_eq!(likely_cause(&peer("Active", false), 64512, failing, 60), None);
    }

    #[test]
    fn refusals_and_transport_errors_have_their_causes() {
        let mut p = peer("Active", false);
        p.detail.last_notification_received = Some(Notice { code: 2, subcode: 2, text: String::new(), at_unix: 0 });
        assert!(likely_cause(&p, 64512, Md5Counters::default(), 60).unwrap().contains("other than ours (64512)"));
        p.detail.last_notification_received = None;
        p.last_error = Some("connect: Connection refused (os error 111)".into());
        assert!(likely_cause(&p, 64512, Md5Counters::default(), 60).unwrap().contains("10.0.0.2:179"));
        p.last_error = Some("connect: connect timed out".into());
        assert!(likely_cause(&p, 64512, Md5Counters::default(), 60).unwrap().contains("TCP MD5"));
        p.last_error = None;
        assert_eq!(likely_cause(&p, 64512, Md5Counters::default(), 60), None);
    }

    #[test]
    fn messages_are_counted_by_type() {
        let mut c = MessageCounts::default();
        count(&mut c, &Message::Keepalive);
        count(&mut c, &Message::Keepalive);
        count(&mut c, &Message::Notification(NotificationMsg::new(6, 2, bytes::Bytes::new())));
        assert_eq!((c.keepalive, c.notification, c.total()), (2, 1, 3));
        let n = notice(&NotificationMsg::new(6, 2, bytes::Bytes::new()), 5);
        assert!(n.text.contains("Cease") && n.at_unix == 5, "{n:?}");
    }
}
