//! Packet captures with tcpdump inside a namespace: what crossed an
//! interface and when, by the kernel's receive timestamps (not the time a
//! busy test thread got round to reading).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::netns::Netns;
use crate::process::Daemon;
use crate::TempDir;

/// A BPF filter term that matches TCP segments carrying a payload (no bare
/// ACKs), IPv4.
pub const TCP_PAYLOAD_V4: &str = "(ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2)) != 0";

#[derive(Debug)]
pub struct Capture {
    daemon: Daemon,
    _dir: TempDir,
}

impl Capture {
    /// Starts `tcpdump -i <iface> <filter>` in `ns` and waits until it
    /// listens.
    pub fn start(ns: &Netns, iface: &str, filter: &str) -> anyhow::Result<Self> {
        let dir = TempDir::new("capture")?;
        let log = dir.path().join("tcpdump.txt");
        let daemon =
            Daemon::spawn(ns, "tcpdump", &["tcpdump", "-i", iface, "-nn", "-tt", "-l", "-Q", "in", filter], &log, &[])?;
        let c = Self { daemon, _dir: dir };
        crate::wait::poll("tcpdump listening", Duration::from_secs(10), || {
            c.text().contains("listening on").then_some(())
        })
        .with_context(|| format!("tcpdump did not start: {}", c.text()))?;
        Ok(c)
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.daemon.log).unwrap_or_default()
    }

    /// The capture times of the packets seen so far.
    pub fn times(&self) -> Vec<SystemTime> {
        self.text()
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse::<f64>().ok())
            .map(|t| UNIX_EPOCH + Duration::from_secs_f64(t))
            .collect()
    }

    /// The longest time within `[from, to]` without a packet (the edges
    /// count as packets).
    pub fn longest_gap(&self, from: SystemTime, to: SystemTime) -> Duration {
        longest_gap(&self.times(), from, to)
    }

    pub fn stop(mut self) {
        self.daemon.stop(Duration::from_secs(3));
    }
}

pub fn longest_gap(times: &[SystemTime], from: SystemTime, to: SystemTime) -> Duration {
    let mut last = from;
    let mut gap = Duration::ZERO;
    for &t in times.iter().filter(|t| **t > from && **t <= to) {
        gap = gap.max(t.duration_since(last).unwrap_or_default());
        last = t;
    }
    gap.max(to.duration_since(last).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_counts_the_edges() {
        let t = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        let times = [t(50), t(1000), t(1900), t(5000)];
        assert_eq!(longest_gap(&times, t(0), t(2500)), Duration::from_millis(950));
        assert_eq!(longest_gap(&times, t(0), t(4000)), Duration::from_millis(2100));
        assert_eq!(longest_gap(&[], t(0), t(10)), Duration::from_millis(10));
    }
}
