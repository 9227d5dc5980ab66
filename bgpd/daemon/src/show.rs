//! `merlectl show peer` and `show config` as text: pure renderings of
//! what the control socket answers.

use std::fmt::Write;

use crate::api::{Notice, PeerStatus};

fn ago(at_unix: u64, now_unix: u64) -> String {
    let s = now_unix.saturating_sub(at_unix);
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h) {
        (0, 0) => format!("{m}m{s:02}s"),
        (0, _) => format!("{h}h{m:02}m{s:02}s"),
        _ => format!("{d}d{h:02}h{m:02}m"),
    }
}

fn notice(n: &Option<Notice>, now: u64) -> String {
    match n {
        Some(n) => format!("{} ({}/{}), {} ago", n.text, n.code, n.subcode, ago(n.at_unix, now)),
        None => "none".into(),
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The peer in `show bgp neighbor`'s spirit (FRR, BIRD's `show protocols
/// all`), one fact per line.
pub fn peer(p: &PeerStatus, now_unix: u64) -> String {
    let d = &p.detail;
    let mut o = String::new();
    let yes = |b: bool| if b { "yes" } else { "no" };
    let _ = writeln!(o, "Peer {} port {}, AS {} ({}), {}", p.address, p.port, p.as_number, p.session, p.peer_type);
    if let Some(desc) = &p.description {
        let _ = writeln!(o, "  Description:       {desc}");
    }
    let _ = writeln!(o, "  State:             {} for {}", p.state, ago(p.since_unix, now_unix));
    match d.established_unix {
        Some(t) => {
            let _ = writeln!(o, "  Uptime:            {}", ago(t, now_unix));
        }
        None => {
            let _ = writeln!(o, "  Info:              {}", p.info);
        }
    }
    let _ = writeln!(o, "  Flaps:             {}", d.flaps);
    if let Some(c) = &d.likely_cause {
        let _ = writeln!(o, "  Likely cause:      {c}");
    }
    if let Some(id) = &p.remote_id {
        let _ = writeln!(o, "  Remote router ID:  {id}");
    }
    let _ = writeln!(
        o,
        "  Timers:            hold {} s negotiated ({} configured), keepalive {}, connect retry {} s",
        p.hold_time.map_or("-".into(), |h| h.to_string()),
        d.hold_time_configured,
        p.keepalive.map_or("-".into(), |k| format!("{k} s")),
        d.connect_retry
    );
    let _ = writeln!(
        o,
        "  Transport:         TCP MD5 {}, GTSM {}, passive {}",
        if d.password { "on" } else { "off" },
        d.ttl_security.map_or("off".into(), |h| format!("{h} hops")),
        yes(p.passive)
    );
    match &d.capabilities {
        Some(c) => {
            let label = if p.state == "Established" { "Capabilities:" } else { "Last session's:" };
            let _ = writeln!(o, "  {label:<19}families {}", list(&c.families));
            let _ = writeln!(
                o,
                "                     4-octet AS {}, route refresh {} (enhanced {}), graceful restart {}{}",
                yes(c.four_octet_as),
                yes(c.route_refresh),
                yes(c.enhanced_route_refresh),
                yes(c.graceful_restart),
                c.peer_restart_time.map_or(String::new(), |t| format!(" (peer's restart time {t} s)"))
            );
            let _ = writeln!(
                o,
                "                     ADD-PATH receive {}, send {}; extended next hop receive {}, send {}",
                list(&c.add_path_receive),
                list(&c.add_path_send),
                list(&c.extended_next_hop_receive),
                list(&c.extended_next_hop_send)
            );
        }
        None => {
            let _ = writeln!(o, "  Capabilities:      no session yet");
        }
    }
    let _ = writeln!(o, "  Messages:          {:>8} {:>8}", "received", "sent");
    for ((t, r), (_, s)) in d.messages_received.by_type().into_iter().zip(d.messages_sent.by_type()) {
        let _ = writeln!(o, "    {t:<15}  {r:>8} {s:>8}");
    }
    let _ = writeln!(o, "    {:<15}  {:>8} {:>8}", "total", d.messages_received.total(), d.messages_sent.total());
    let _ = writeln!(
        o,
        "  Prefixes:          {} received, {} advertised; {} accepted, {} rejected by policy, {} withdrawn",
        p.prefixes_received, p.prefixes_advertised, d.prefixes_accepted, d.prefixes_rejected, d.withdrawals_received
    );
    let _ = writeln!(o, "  Output queue:      {} bytes", p.out_queue_bytes);
    let _ = writeln!(o, "  Last error:        {}", p.last_error.as_deref().unwrap_or("none"));
    let _ = writeln!(o, "  NOTIFICATION sent: {}", notice(&d.last_notification_sent, now_unix));
    let _ = writeln!(o, "  NOTIFICATION recv: {}", notice(&d.last_notification_received, now_unix));
    o
}

/// Drops JSON nulls (unset options), which TOML cannot hold.
pub fn without_nulls(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.into_iter().filter(|(_, x)| !x.is_null()).map(|(k, x)| (k, without_nulls(x))).collect(),
        ),
        serde_json::Value::Array(a) => serde_json::Value::Array(a.into_iter().map(without_nulls).collect()),
        x => x,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::api::{Capabilities, PeerDetail};

    #[test]
    fn a_peer_reads_as_one_fact_per_line() {
        let mut d = PeerDetail {
            flaps: 3,
            password: true,
            hold_time_configured: 9,
            connect_retry: 5,
            likely_cause: Some("password mismatch: …".into()),
            last_notification_received: Some(Notice {
                code: 6,
                subcode: 2,
                text: "Cease/Administrative Shutdown".into(),
                at_unix: 940,
            }),
            capabilities: Some(Capabilities { families: vec!["ipv4-unicast".into()], ..Default::default() }),
            ..Default::default()
        };
        d.messages_received.keepalive = 4;
        let p = PeerStatus {
            address: "10.0.0.2".into(),
            port: 179,
            as_number: 65001,
            state: "Active".into(),
            since_unix: 880,
            info: "Active: connect timed out".into(),
            detail: d,
            ..Default::default()
        };
        let t = peer(&p, 1000);
        assert!(t.contains("State:             Active for 2m00s"), "{t}");
        assert!(t.contains("Likely cause:      password mismatch"), "{t}");
        assert!(t.contains("Flaps:             3"));
        assert!(t.contains("TCP MD5 on"));
        assert!(t.contains("Last session's:    families ipv4-unicast"), "{t}");
        let row = t.lines().find(|l| l.trim_start().starts_with("keepalive")).unwrap();
        assert_eq!(row.split_whitespace().collect::<Vec<_>>(), ["keepalive", "4", "0"], "{t}");
        assert!(t.contains("NOTIFICATION recv: Cease/Administrative Shutdown (6/2), 1m00s ago"), "{t}");
        assert_eq!(ago(0, 90_061), "1d01h01m");
    }

    #[test]
    fn nulls_go_and_the_rest_stays() {
        let v = serde_json::json!({"a": null, "b": {"c": null, "d": 1}, "e": [{"f": null}]});
        assert_eq!(without_nulls(v), serde_json::json!({"b": {"d": 1}, "e": [{}]}));
    }
}
