//! `merle_metrics`: the per-CPU counters of every (hook, reason), summed
//! over the CPUs.

use aya::maps::{Map, MapData, PerCpuArray};

use crate::pins::PinDir;
use crate::types::{metric_index, Hook, Kind, MetricsValue, Reason};
use crate::Error;

/// One counter, summed over the CPUs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counter {
    pub hook: Hook,
    pub reason: String,
    pub kind: Kind,
    pub packets: u64,
    pub bytes: u64,
}

pub struct Metrics {
    map: PerCpuArray<MapData, MetricsValue>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn open(pins: &PinDir) -> Result<Self, Error> {
        let path = pins.map("merle_metrics");
        let data = MapData::from_pin(&path).map_err(|e| Error::Map(path.display().to_string(), e.to_string()))?;
        let map = PerCpuArray::try_from(Map::PerCpuArray(data))
            .map_err(|e| Error::Map("merle_metrics".into(), e.to_string()))?;
        Ok(Self { map })
    }

    pub fn get(&self, hook: Hook, reason: Reason) -> MetricsValue {
        let mut sum = MetricsValue::default();
        if let Ok(per_cpu) = self.map.get(&metric_index(hook, reason), 0) {
            for v in per_cpu.iter() {
                sum.packets += v.packets;
                sum.bytes += v.bytes;
            }
        }
        sum
    }

    /// Every counter that is not zero.
    pub fn counters(&self) -> Vec<Counter> {
        let mut out = Vec::new();
        for hook in Hook::ALL {
            for r in Reason::ALL {
                let v = self.get(hook, *r);
                if v.packets > 0 {
                    out.push(Counter {
                        hook,
                        reason: r.name().into(),
                        kind: r.kind(),
                        packets: v.packets,
                        bytes: v.bytes,
                    });
                }
            }
        }
        out
    }
}
