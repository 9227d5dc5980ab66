#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (seeds/<target>/) from the
captured BGP fixtures (bgpd/tests/fixtures/*.hex, real messages from BIRD,
FRR and GoBGP sessions) and the example configuration. Run it again after
adding fixtures; the seeds are committed."""
import hashlib
import pathlib

here = pathlib.Path(__file__).resolve().parent
root = here.parent.parent
fixtures = root / "bgpd" / "tests" / "fixtures"


def messages():
    for f in sorted(fixtures.glob("*.hex")):
        hexits = "".join(l.strip() for l in f.read_text().splitlines() if not l.startswith("#"))
        yield f.stem, bytes.fromhex(hexits)


def write(target, data):
    d = here / "seeds" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


# The context byte: 4-octet AS and eBGP (0x21), plus ADD-PATH on both
# families (0x07) for a second copy of each UPDATE.
for name, m in messages():
    kind, body = m[18], m[19:]
    for sel in (0x21, 0x27):
        write("decode_message", bytes([sel]) + m[18:])
    if kind == 1:
        write("decode_capabilities", body)
    if kind == 2 and len(body) >= 4:
        wlen = int.from_bytes(body[0:2], "big")
        alen = int.from_bytes(body[2 + wlen : 4 + wlen], "big")
        attrs = body[4 + wlen : 4 + wlen + alen]
        if attrs:
            write("decode_attributes", bytes([0x21]) + attrs)

for toml in sorted((root / "conf" / "examples").glob("*.toml")):
    write("config", toml.read_bytes())
write("config", b'[node]\nname = "a"\naddress = "10.0.0.1/24"\n\n[[bgp.peers]]\naddress = "10.0.0.254"\nas_number = 65001\n')

for conflist in sorted((root / "conf" / "examples").glob("*.conflist")):
    import json
    doc = json.loads(conflist.read_text())
    for plugin in doc.get("plugins", []):
        net = dict(plugin, cniVersion=doc.get("cniVersion", "1.0.0"), name=doc.get("name", "k8s-pod-network"))
        write("cni_netconf", json.dumps(net).encode())
write("cni_netconf", b'{"cniVersion":"1.1.0","name":"k8s","type":"merle-cni","cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}')
for cmd in (b"ADD", b"DEL", b"CHECK", b"GC", b"STATUS", b"VERSION"):
    write("cni_env", b"\0".join([cmd, b"0123456789abcdef", b"/var/run/netns/pod", b"eth0", b"K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0", b"/opt/cni/bin"]))

# Services after the target's fixed node and ranges: the example's, and
# each kind (ClusterIP, NodePort, load-balancer and external IPs, Local
# policy, hybrid, UDP, IPv6).
example = (root / "conf" / "examples" / "merled.toml").read_text()
blocks, keep = [], False
for line in example.splitlines(keepends=True):
    if line.startswith("["):
        keep = line.startswith("[[services]]")
    if keep:
        blocks.append(line)
write("services", "".join(blocks).replace('"node-a"', '"n1"').encode())
write("services", b'''[[services]]
name = "default/web"
protocol = "tcp"
cluster_ip = "10.96.0.10"
port = 80
node_port = 30080
load_balancer_ips = ["192.0.2.10"]
external_ips = ["198.51.100.10"]
external_traffic_policy = "Local"
mode = "hybrid"
backends = [
  { address = "10.244.0.5", port = 8080, node = "n1" },
  { address = "10.244.1.5", port = 8080, node = "n2" },
]

[[services]]
name = "kube-system/dns"
protocol = "udp"
cluster_ip = "10.96.0.53"
port = 53
mode = "snat"
backends = [{ address = "10.244.0.6", port = 5353, node = "n1" }]

[[services]]
name = "default/web6"
protocol = "tcp"
cluster_ip = "fd00:96::10"
port = 443
load_balancer_ips = ["2001:db8::10"]
mode = "dsr"
backends = [{ address = "fd00:244::5", port = 8443, node = "n2" }]

[dataplane]
maglev_table_size = 251
''')

# Control-socket requests, one of each command merlectl and merle-cni send.
for line in (
    b'{"command":"status"}',
    b'{"command":"routes"}',
    b'{"command":"routes","prefix":"10.244.0.0/24","peer":"local","best":true,"count":true}',
    b'{"command":"routes","prefix":"10.244.0.7","peer":"10.0.0.254"}',
    b'{"command":"fib"}',
    b'{"command":"ipam-changed"}',
    b'{"command":"ipam-show"}',
    b'{"command":"ipam-release","handle":"k8s-pod-network.0123456789abcdef"}',
    b'{"command":"dataplane"}',
    b'{"command":"service-put","service":{"name":"default/web","protocol":"tcp","cluster_ip":"10.96.0.10","port":80,"node_port":30080,"backends":[{"address":"10.244.0.5","port":8080,"node":"n1"}]}}',
    b'{"command":"service-delete","name":"default/web"}',
    b'{"command":"cni-report","op":"ADD","result":"ok","seconds":0.012,"ipam_seconds":0.004}',
    b'{"command":"show-peer","address":"10.0.0.254"}',
    b'{"command":"show-config"}',
):
    write("control_request", line)
