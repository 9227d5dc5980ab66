//! The loader against the kernel: adoption, upgrade by BPF_LINK_UPDATE,
//! verifier rejection, TCX and clsact attachment, and what the pins hold.
#![allow(clippy::unwrap_used)]

use merle_ebpf::datapath::{load, unlink, AttachMode, Linker};
use merle_ebpf::objects::{self, Program};
use merle_ebpf::sys;
use merle_ebpf::types::Hook;
use merle_ebpf::{Error, PinDir};
use testbed::bpf::{skip_unless_bpf, BpfFs};
use testbed::netns::Netns;

fn in_ns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    match ns.spawn(f).unwrap().join() {
        Ok(r) => r.unwrap(),
        Err(p) => std::panic::resume_unwind(p),
    }
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn a_second_load_adopts_and_an_upgrade_moves_links_atomically() {
    if skip_unless_bpf("a_second_load_adopts") {
        return;
    }
    let fs = BpfFs::new("adopt").unwrap();
    let pins = PinDir::new(fs.pin_dir());
    let ns = Netns::new("adopt").unwrap();
    ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v0p"]).unwrap();
    ns.ip(&["link", "set", "v0", "up"]).unwrap();
    in_ns(&ns, move || {
        let digest = objects::digest();
        assert!(!load(&pins, &objects::PROGRAMS, &digest).unwrap(), "first load loads");
        assert!(load(&pins, &objects::PROGRAMS, &digest).unwrap(), "second load adopts");
        let mut l = Linker::open(&pins, AttachMode::Tcx, &objects::POD_INGRESS).unwrap();
        let first = l.link("v0").unwrap();
        assert!(!first.kept);
        assert!(l.link("v0").unwrap().kept, "linking again keeps the link");
        let link_pin = pins.link(Hook::PodIngress, "v0");
        let before = sys::link_info(std::os::fd::AsFd::as_fd(&sys::obj_get(&link_pin).unwrap())).unwrap();
        assert_eq!((before.prog_id, before.ifindex), (l.prog_id(), sys::ifindex("v0")));

        // A new version: the same link now runs the new program.
        assert!(!load(&pins, &objects::PROGRAMS, "0000000000000001").unwrap());
        assert_eq!(pins.current().as_deref(), Some("0000000000000001"));
        assert!(!pins.progs().join(&digest).exists(), "the old version's pins are gone");
        let after = sys::link_info(std::os::fd::AsFd::as_fd(&sys::obj_get(&link_pin).unwrap())).unwrap();
        let l2 = Linker::open(&pins, AttachMode::Tcx, &objects::POD_INGRESS).unwrap();
        assert_eq!(after.id, before.id, "the same link");
        assert_eq!(after.prog_id, l2.prog_id(), "running the new program");
        assert_ne!(after.prog_id, before.prog_id);

        unlink(&pins, Hook::PodIngress, "v0").unwrap();
        assert!(!link_pin.exists());
        unlink(&pins, Hook::PodIngress, "v0").unwrap();
    });
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn a_program_the_verifier_rejects_is_named_with_its_log_and_leaves_nothing() {
    if skip_unless_bpf("verifier_rejection") {
        return;
    }
    let fs = BpfFs::new("reject").unwrap();
    let pins = PinDir::new(fs.pin_dir());
    let bad = [Program { name: "reject", object: objects::TEST_REJECT, hook: Hook::PodIngress }];
    match load(&pins, &bad, "ffffffffffffffff") {
        Err(Error::Verifier { program, log, .. }) => {
            assert_eq!(program, "reject");
            assert!(log.contains("invalid access to packet") || log.contains("R1"), "the verifier's log: {log}");
            let msg = Error::Verifier { program, error: "x".into(), log }.to_string();
            assert!(msg.contains("program reject was rejected by the verifier"), "{msg}");
        }
        other => panic!("expected a verifier error, got {other:?}"),
    }
    assert!(!pins.root().exists(), "a failed first load leaves no pin behind");
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn clsact_is_the_fallback_and_detaches_cleanly() {
    if skip_unless_bpf("clsact_fallback") {
        return;
    }
    let fs = BpfFs::new("clsact").unwrap();
    let pins = PinDir::new(fs.pin_dir());
    let ns = Netns::new("clsact").unwrap();
    ns.ip(&["link", "add", "vx.1", "type", "veth", "peer", "name", "vxp"]).unwrap();
    ns.ip(&["link", "set", "vx.1", "up"]).unwrap();
    let p = pins.clone();
    in_ns(&ns, move || {
        load(&p, &objects::PROGRAMS, &objects::digest()).unwrap();
        let mut l = Linker::open(&p, AttachMode::Clsact, &objects::NODE_INGRESS).unwrap();
        l.link("vx.1").unwrap();
        assert_eq!(p.linked(Hook::NodeIngress), vec![("vx.1".to_string(), true)]);
    });
    let shown = ns.exec(&["tc", "filter", "show", "dev", "vx.1", "ingress"]).unwrap();
    assert!(shown.contains("node_ingress") && shown.contains("direct-action"), "{shown}");
    let p = pins.clone();
    in_ns(&ns, move || unlink(&p, Hook::NodeIngress, "vx.1").unwrap());
    let shown = ns.exec(&["tc", "filter", "show", "dev", "vx.1", "ingress"]).unwrap();
    assert!(!shown.contains("node_ingress"), "{shown}");
    assert!(pins.linked(Hook::NodeIngress).is_empty());
    if merle_ebpf::probe::kernel_version() >= (6, 6) {
        assert_eq!(AttachMode::detect(), AttachMode::Tcx, "kernel {} has TCX", merle_ebpf::probe::kernel_release());
    }
}
