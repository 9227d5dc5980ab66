//! The CNI benchmark: ADD and DEL latency over `pods` pods, one after the
//! other, and the wall time of `pods` ADDs (then DELs) all at once, for
//! merle-cni (file store) and the reference `ptp` plugin with `host-local`
//! IPAM (Debian's containernetworking-plugins), alternating in one run.
//!
//! Both plugins are started the same way: by a thread that has entered the
//! node's namespace, so the child runs there with no `ip netns exec` in the
//! way, and each invocation is timed from spawn to exit.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::bench::median;
use crate::netns::{run, veth, Netns};
use crate::TempDir;

const REFERENCE: &str = "/usr/lib/cni/ptp";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plugin {
    Merle,
    Reference,
}

impl Plugin {
    fn name(self) -> &'static str {
        match self {
            Self::Merle => "merle-cni",
            Self::Reference => "ptp+host-local",
        }
    }
}

struct Setup {
    node: Netns,
    _gw: Netns,
    pods: Vec<String>,
    dir: TempDir,
    merle: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let batch: String = self.pods.iter().map(|p| format!("netns del {p}\n")).collect();
        let _ = batch_ip(&batch);
    }
}

fn batch_ip(cmds: &str) -> anyhow::Result<()> {
    let mut c = Command::new("ip").args(["-force", "-batch", "-"]).stdin(Stdio::piped()).spawn()?;
    c.stdin.take().context("stdin")?.write_all(cmds.as_bytes())?;
    if !c.wait()?.success() {
        bail!("ip -batch failed");
    }
    Ok(())
}

fn setup(pods: u32, merle: &Path) -> anyhow::Result<Setup> {
    let node = Netns::new("bcni-node")?;
    let gw = Netns::new("bcni-gw")?;
    veth(&node, "eth0", &gw, "eth0")?;
    node.add_addr("eth0", "10.0.0.1/24")?;
    gw.add_addr("eth0", "10.0.0.254/24")?;
    node.ip(&["route", "add", "default", "via", "10.0.0.254"])?;
    let tag = format!("mrl-bcni-{}-{}", std::process::id(), crate::netns::unique());
    let names: Vec<String> = (0..pods).map(|i| format!("{tag}-p{i}")).collect();
    let mut s = Setup { node, _gw: gw, pods: Vec::new(), dir: TempDir::new("bench-cni")?, merle: merle.to_owned() };
    batch_ip(&names.iter().map(|p| format!("netns add {p}\n")).collect::<String>())?;
    s.pods = names;
    let cfg = format!(
        "[node]\nname = \"bench\"\naddress = \"10.0.0.1/24\"\n[[pools]]\ncidr = \"10.250.0.0/16\"\n\
         [datastore]\npath = \"{}\"\n[control]\nsocket = \"{}\"\n",
        s.dir.path().join("merle").display(),
        s.dir.path().join("no-merled.sock").display()
    );
    std::fs::write(s.dir.path().join("merle.toml"), cfg)?;
    Ok(s)
}

impl Setup {
    fn netconf(&self, p: Plugin) -> String {
        match p {
            Plugin::Merle => serde_json::json!({
                "cniVersion": "1.0.0", "name": "bench", "type": "merle-cni",
                "merle_config": self.dir.path().join("merle.toml"),
            }),
            Plugin::Reference => serde_json::json!({
                "cniVersion": "1.0.0", "name": "bench", "type": "ptp", "ipMasq": false, "mtu": 1500,
                "ipam": { "type": "host-local", "subnet": "10.251.0.0/16",
                          "dataDir": self.dir.path().join("host-local") },
            }),
        }
        .to_string()
    }

    /// Starts one invocation inside the node namespace.
    fn spawn(&self, p: Plugin, cmd: &str, pod: usize) -> anyhow::Result<Child> {
        let bin = match p {
            Plugin::Merle => self.merle.clone(),
            Plugin::Reference => PathBuf::from(REFERENCE),
        };
        let mut c = Command::new(bin);
        c.env_clear()
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", format!("bench{pod}"))
            .env("CNI_NETNS", format!("/var/run/netns/{}", self.pods[pod]))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let conf = self.netconf(p);
        let mut child =
            self.node.spawn(move || c.spawn())?.join().map_err(|_| anyhow::anyhow!("spawn thread panicked"))???;
        child.stdin.take().context("stdin")?.write_all(conf.as_bytes())?;
        Ok(child)
    }

    fn finish(child: Child, what: &str) -> anyhow::Result<()> {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "{what} failed: {} {}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// One invocation's latency.
    fn once(&self, p: Plugin, cmd: &str, pod: usize) -> anyhow::Result<f64> {
        let t = Instant::now();
        let child = self.spawn(p, cmd, pod)?;
        Self::finish(child, &format!("{} {cmd} pod {pod}", p.name()))?;
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    }

    /// Wall time of every pod's `cmd` at once.
    fn all_at_once(&self, p: Plugin, cmd: &str) -> anyhow::Result<f64> {
        let t = Instant::now();
        let children: Vec<Child> = (0..self.pods.len()).map(|i| self.spawn(p, cmd, i)).collect::<Result<_, _>>()?;
        for (i, c) in children.into_iter().enumerate() {
            Self::finish(c, &format!("{} {cmd} pod {i} (parallel)", p.name()))?;
        }
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    }

    /// Every host-side link is gone, so the next round starts clean.
    fn check_clean(&self) -> anyhow::Result<()> {
        let links = run(Command::new("ip").args(["-n", &self.node.name, "-o", "link"]))?;
        // `N: name@peer: <...>`; ptp names its host ends veth…, merle mrl….
        let n = links
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .filter(|name| name.starts_with("mrl") || name.starts_with("veth"))
            .count();
        if n != 0 {
            bail!("{n} pod links left after DEL");
        }
        Ok(())
    }
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

#[derive(Debug, Default)]
struct Figures {
    add: Vec<f64>,
    del: Vec<f64>,
    par_add: Vec<f64>,
    par_del: Vec<f64>,
}

pub fn run_bench(pods: u32, runs: u32, merle: &Path) -> anyhow::Result<()> {
    if !Path::new(REFERENCE).is_file() {
        bail!("{REFERENCE} is missing: install containernetworking-plugins (testbed/install-deps.sh does)");
    }
    let s = setup(pods, merle)?;
    let mut figs = [Figures::default(), Figures::default()];
    for r in 0..runs {
        let order = if r % 2 == 0 { [Plugin::Merle, Plugin::Reference] } else { [Plugin::Reference, Plugin::Merle] };
        for p in order {
            crate::wait::check_interrupted()?;
            let f = &mut figs[p as usize];
            let (mut add, mut del) = (Vec::new(), Vec::new());
            for i in 0..s.pods.len() {
                add.push(s.once(p, "ADD", i)?);
            }
            for i in 0..s.pods.len() {
                del.push(s.once(p, "DEL", i)?);
            }
            s.check_clean()?;
            let pa = s.all_at_once(p, "ADD")?;
            let pd = s.all_at_once(p, "DEL")?;
            s.check_clean()?;
            println!(
                "run {}: {:>15}  ADD p50 {:6.2} ms p99 {:6.2} ms  DEL p50 {:6.2} ms p99 {:6.2} ms  {pods} parallel ADD {:7.1} ms, DEL {:7.1} ms",
                r + 1,
                p.name(),
                median(add.clone()),
                percentile(add.clone(), 0.99),
                median(del.clone()),
                percentile(del.clone(), 0.99),
                pa,
                pd
            );
            f.add.extend(add);
            f.del.extend(del);
            f.par_add.push(pa);
            f.par_del.push(pd);
        }
    }
    println!("\nCNI, {pods} pods, {runs} runs (latencies over all {} invocations):", pods * runs);
    for p in [Plugin::Merle, Plugin::Reference] {
        let f = &figs[p as usize];
        println!(
            "  {:>15}: ADD p50 {:.2} ms p99 {:.2} ms; DEL p50 {:.2} ms p99 {:.2} ms; parallel ADD median {:.1} ms, DEL {:.1} ms",
            p.name(),
            median(f.add.clone()),
            percentile(f.add.clone(), 0.99),
            median(f.del.clone()),
            percentile(f.del.clone(), 0.99),
            median(f.par_add.clone()),
            median(f.par_del.clone())
        );
    }
    let (m, r) = (&figs[0], &figs[1]);
    let ratio = |a: &[f64], b: &[f64]| median(a.to_vec()) / median(b.to_vec());
    println!(
        "  ratios merle/reference: ADD p50 {:.2} (goal <= 1.00, and p50 < 10 ms), DEL p50 {:.2}, parallel ADD {:.2}, parallel DEL {:.2}",
        ratio(&m.add, &r.add),
        ratio(&m.del, &r.del),
        ratio(&m.par_add, &r.par_add),
        ratio(&m.par_del, &r.par_del)
    );
    Ok(())
}
