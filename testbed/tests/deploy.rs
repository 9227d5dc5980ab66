//! What can be checked of the deployment without a cluster or a Docker
//! engine: the manifests against the Kubernetes API schemas
//! (`kubernetes-validate`, installed by `testbed/install-deps.sh`), the
//! ConfigMap's configuration through merle's own loader, the DaemonSet's
//! paths against its mounts, and the Dockerfile against the tree and the
//! workspace's binaries.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The virtualenv `install-deps.sh` puts kubernetes-validate in.
const VENV: &str = "/opt/merle/venv";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn venv_tool(name: &str) -> PathBuf {
    let p = Path::new(VENV).join("bin").join(name);
    assert!(p.is_file(), "{} is missing: run ./testbed/install-deps.sh", p.display());
    p
}

/// Every document of a YAML file, as JSON (through the venv's PyYAML).
fn yaml_docs(path: &Path) -> Vec<Value> {
    let out = Command::new(venv_tool("python"))
        .args(["-c", "import json,sys,yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_manifests_validate_against_the_kubernetes_schemas() {
    let manifest = root().join("deploy/merle.yaml");
    // The newest schemas the tool ships and an older release still in
    // support, strictly: an unknown field is an error.
    for version in ["1.37.0", "1.30.0"] {
        let out = Command::new(venv_tool("kubernetes-validate"))
            .args(["--strict", "--kubernetes-version", version])
            .arg(&manifest)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "Kubernetes {version}:\n{text}");
        assert!(!text.contains("ERROR") && !text.contains("WARN"), "Kubernetes {version}:\n{text}");
    }
    // And a broken one fails: the check can fail.
    let dir = testbed::TempDir::new("deploy").unwrap();
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap().replace("hostNetwork: true", "hostNetwork: \"yes\"");
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(venv_tool("kubernetes-validate")).arg("--strict").arg(&bad).output().unwrap();
    assert!(!out.status.success(), "a wrong type must fail validation");
}

/// A node for conf's identity: its name from the downward API and one
/// address next to the ToR.
struct Node;
impl conf::identity::Host for Node {
    fn var(&self, name: &str) -> Option<String> {
        (name == "MERLE_NODE_NAME").then(|| "worker-1".to_owned())
    }
    fn nodename_file(&self) -> Option<String> {
        None
    }
    fn addrs(&self) -> Result<Vec<conf::identity::HostAddr>, String> {
        Ok(vec![conf::identity::HostAddr { ifname: "eth0".into(), net: "10.0.0.7/24".parse().unwrap(), up: true }])
    }
    fn source_for(&self, _: IpAddr) -> Option<IpAddr> {
        "10.0.0.7".parse().ok()
    }
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind} in the manifest"))
}

#[test]
fn the_daemonset_runs_what_the_image_has_with_the_configmaps_config_on_its_mounts() {
    let docs = yaml_docs(&root().join("deploy/merle.yaml"));
    let cm = find(&docs, "ConfigMap");
    let text = cm["data"]["merle.toml"].as_str().unwrap();
    let cfg = conf::from_str_on(text, Path::new("merle-config/merle.toml"), &Node)
        .unwrap_or_else(|e| panic!("the ConfigMap's configuration: {e}"));
    assert_eq!(cfg.node.name, "worker-1");
    assert_eq!(cfg.node.address.to_string(), "10.0.0.7/24");

    let ds = find(&docs, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    let volumes: BTreeSet<&str> =
        pod["volumes"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    let containers: Vec<&Value> =
        pod["initContainers"].as_array().unwrap().iter().chain(pod["containers"].as_array().unwrap()).collect();
    for c in &containers {
        let name = c["name"].as_str().unwrap();
        let mounts: Vec<(&str, &str)> = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["name"].as_str().unwrap(), m["mountPath"].as_str().unwrap()))
            .collect();
        for (v, _) in &mounts {
            assert!(volumes.contains(v), "{name} mounts {v}, which is no volume");
        }
        // Every path an argument names is under one of its mounts.
        let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        for a in &args {
            let path = a.split_once('=').map(|(_, p)| p).unwrap_or(a);
            if path.starts_with('/') {
                assert!(mounts.iter().any(|(_, m)| path.starts_with(m)), "{name}: {path} is under none of its mounts");
            }
        }
        // The node's name from the downward API.
        let env = c["env"].as_array().unwrap();
        assert!(
            env.iter()
                .any(|e| e["name"] == "MERLE_NODE_NAME" && e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"),
            "{name} gets no MERLE_NODE_NAME"
        );
        // Only binaries the image has.
        let cmd = c["command"][0].as_str().unwrap();
        assert!(
            ["/usr/local/bin/merled", "/usr/local/bin/merle-cni"].contains(&cmd),
            "{name} runs {cmd}, which the image does not have"
        );
    }
    // merled's own view: the file it is given is the ConfigMap's, the
    // control socket, pins and cgroup root are on its mounts, and the
    // probes ask the port the configuration serves health on.
    let merled = containers.iter().find(|c| c["name"] == "merled").unwrap();
    let mounts: Vec<&str> =
        merled["volumeMounts"].as_array().unwrap().iter().map(|m| m["mountPath"].as_str().unwrap()).collect();
    let under = |p: &Path| mounts.iter().any(|m| p.starts_with(m));
    assert!(under(&cfg.control.socket), "{}", cfg.control.socket.display());
    assert!(under(&cfg.dataplane.pin_dir), "{}", cfg.dataplane.pin_dir.display());
    assert!(under(&cfg.dataplane.cgroup_root), "{}", cfg.dataplane.cgroup_root.display());
    let health = cfg.health.listen.expect("[health] listen");
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &merled[probe]["httpGet"];
        assert_eq!(get["port"], health.port(), "{probe}");
        assert_eq!(get["host"], health.ip().to_string(), "{probe}");
        assert!(["/healthz", "/readyz"].contains(&get["path"].as_str().unwrap()), "{probe}");
    }
    // Prometheus is pointed at the port merled serves metrics on.
    let metrics = cfg.metrics.listen.expect("[metrics] listen");
    let ports = merled["ports"].as_array().unwrap();
    assert!(ports.iter().any(|p| p["name"] == "metrics" && p["containerPort"] == metrics.port()), "{ports:?}");
    let ann = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/port"], metrics.port().to_string());
    assert_eq!(cfg.log.format, conf::LogFormat::Json);
    // The etcd Secret: optional, on merled's mount and copied by both
    // install containers to the host's /etc/merle/etcd, which is where a
    // TLS configuration's files are for merle-cni.
    let secret = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "etcd-secret").unwrap();
    assert_eq!(secret["secret"]["secretName"], find(&docs, "Secret")["metadata"]["name"]);
    assert_eq!(secret["secret"]["optional"], true);
    assert!(mounts.contains(&"/etc/merle/etcd"), "{mounts:?}");
    for c in containers.iter().filter(|c| c["command"][1] == "install") {
        let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert!(
            args.contains(&"--secrets-from=/etc/merle/etcd") && args.contains(&"--secrets-to=/host/etc/merle/etcd"),
            "{args:?}"
        );
    }
}

/// The binaries the workspace builds, from cargo's own metadata.
fn workspace_bins() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_dockerfile_copies_files_that_exist_and_binaries_the_workspace_builds() {
    let text = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let bins = workspace_bins();
    let mut built = BTreeSet::new();
    let mut copied = BTreeSet::new();
    let mut stages = Vec::new();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first().copied() {
            Some("FROM") => stages.push(words.last().copied().unwrap_or_default().to_owned()),
            Some("COPY") if words.iter().any(|w| w.starts_with("--from=")) => {
                let from = words.iter().find(|w| w.starts_with("--from=")).unwrap().trim_start_matches("--from=");
                assert!(stages.iter().any(|s| s == from), "COPY --from={from}: no such stage");
                let src = words[2];
                if let Some(bin) = src.strip_prefix("/src/target/release/") {
                    copied.insert(bin.to_owned());
                }
            }
            Some("COPY") => {
                for src in &words[1..words.len() - 1] {
                    assert!(root().join(src).exists(), "COPY {src}: not in the tree");
                }
            }
            Some("RUN") if line.contains("cargo build") => {
                for w in words.windows(2).filter(|w| w[0] == "--bin") {
                    assert!(bins.contains(w[1]), "cargo build --bin {}: the workspace has no such binary", w[1]);
                    built.insert(w[1].to_owned());
                }
            }
            _ => {}
        }
    }
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    assert_eq!(copied, built, "the runtime stage copies what the build stage builds");
    for must in ["merled", "merlectl", "merle-cni"] {
        assert!(copied.contains(must), "the image lacks {must}");
    }
    // Every workspace member is in the build context the stage copies.
    let members: Vec<String> = {
        let t = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
        let start = t.find("members").unwrap();
        let list = &t[start..t[start..].find(']').unwrap() + start];
        list.split('"').skip(1).step_by(2).map(|m| m.split('/').next().unwrap().to_owned()).collect()
    };
    for m in &members {
        assert!(text.contains(&format!("COPY {m} {m}")), "the build stage does not copy the member {m}");
    }
}

/// The lab image is merle's image with no entrypoint and the packages
/// the topologies' commands need; every topology node that runs merle's
/// binaries or etcd uses it. (merle's own image has merled as its
/// entrypoint, so a containerlab `cmd: merled ...` would run `merled
/// merled ...` there.)
#[test]
fn the_lab_image_is_merles_without_an_entrypoint_and_every_topology_uses_it() {
    const LAB: &str = "ghcr.io/merle-net/merle-lab:latest";
    let text = std::fs::read_to_string(root().join("deploy/lab.Dockerfile")).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    assert!(lines.contains(&"ARG BASE=ghcr.io/merle-net/merle:latest") && lines.contains(&"FROM ${BASE}"), "{text}");
    assert!(lines.contains(&"ENTRYPOINT []"), "the lab image keeps an entrypoint:\n{text}");
    // Each program a lab node starts, and where the image gets it.
    let from_package = [("etcd", "etcd-server"), ("ping", "iputils-ping"), ("ip", "iproute2"), ("sysctl", "procps")];
    let dir = root().join("testbed/topologies");
    let mut files = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        if !p.to_string_lossy().ends_with(".clab.yml") {
            continue;
        }
        files += 1;
        let t = testbed::topology::Topology::load(&p).unwrap();
        for n in &t.nodes {
            let lines: Vec<&str> = n.cmd.iter().chain(&n.exec).map(String::as_str).collect();
            let programs: Vec<&str> = lines.iter().filter_map(|l| l.split_whitespace().next()).collect();
            let ours = programs.iter().any(|p| p.starts_with("merle") || *p == "etcd");
            if !ours {
                continue;
            }
            assert_eq!(n.image.as_deref(), Some(LAB), "{}: node {} runs {programs:?}", p.display(), n.name);
            for prog in programs {
                if let Some((_, pkg)) = from_package.iter().find(|(c, _)| *c == prog) {
                    assert!(
                        text.contains(pkg),
                        "{}: node {} runs {prog}, which the lab image lacks ({pkg})",
                        p.display(),
                        n.name
                    );
                }
            }
        }
    }
    assert!(files >= 4, "{files} topology files");
}
