//! Run-time statistics of the loaded programs: the kernel counts runs and
//! the time spent in each program while a `BPF_ENABLE_STATS` descriptor is
//! open (what `kernel.bpf_stats_enabled=1` does for `bpftool prog show`).
//! The counting costs two clock reads per run, so it is on only while a
//! caller holds [`RunStats`].

use std::os::fd::OwnedFd;

use aya::programs::loaded_programs;
use aya::sys::{enable_stats, Stats};

use crate::Error;

/// Counting is on while this lives.
#[derive(Debug)]
pub struct RunStats {
    _fd: OwnedFd,
}

impl RunStats {
    pub fn enable() -> Result<Self, Error> {
        let fd = enable_stats(Stats::RunTime).map_err(|e| Error::Unsupported(format!("BPF_ENABLE_STATS: {e}")))?;
        Ok(Self { _fd: fd })
    }
}

/// Runs of one program and the nanoseconds spent in them, so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgramRuns {
    pub runs: u64,
    pub nanos: u64,
}

impl ProgramRuns {
    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: ProgramRuns) -> ProgramRuns {
        ProgramRuns { runs: self.runs.saturating_sub(earlier.runs), nanos: self.nanos.saturating_sub(earlier.nanos) }
    }

    /// Mean nanoseconds per run; `None` without runs.
    pub fn per_run(self) -> Option<f64> {
        (self.runs > 0).then(|| self.nanos as f64 / self.runs as f64)
    }
}

/// The counters of the program with this ID, if it is loaded.
pub fn program_runs(id: u32) -> Option<ProgramRuns> {
    loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .map(|p| ProgramRuns { runs: p.run_count(), nanos: u64::try_from(p.run_time().as_nanos()).unwrap_or(u64::MAX) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_and_means() {
        let a = ProgramRuns { runs: 10, nanos: 1000 };
        let b = ProgramRuns { runs: 30, nanos: 5000 };
        assert_eq!(b.since(a), ProgramRuns { runs: 20, nanos: 4000 });
        assert_eq!(b.since(a).per_run(), Some(200.0));
        assert_eq!(a.since(b), ProgramRuns::default(), "a counter reset reads as nothing");
        assert_eq!(ProgramRuns::default().per_run(), None);
    }
}
