#!/usr/bin/env python3
"""Extract BGP messages from pcap captures into byte-exact hex fixtures.

    extract-bgp-fixtures.py --out DIR SESSION=FILE.pcap [SESSION=FILE.pcap ...]
    extract-bgp-fixtures.py --dump SESSION=FILE.pcap      # only print what is in it

Standard library only.  Reads classic libpcap files (as written by tcpdump -w),
reassembles every TCP stream on port 179 per direction (in sequence-number
order, tolerating retransmissions, overlaps and segments that carry several or
partial messages) and splits each direction into BGP messages by the
16-byte 0xff marker and 2-byte length.

For each session the OPEN messages are decoded and the negotiated capabilities
are worked out (4-octet AS, multiprotocol families, ADD-PATH per family and
direction, extended next hop, graceful restart, route refresh), and every
UPDATE is decoded with the ADD-PATH state of its direction, so the summary
written into each fixture's '#' header is what a decoder should produce.

One file per distinct message is written as
    <sender>-<session>-<nn>-<type>.hex
(identical byte strings are written once: the first occurrence wins and the
header names the other occurrences).  Fixtures are written for streams
between the two main speakers only (bird <-> frr); streams of other speakers
in the capture (bird3 in the ibgp phase) are summarised in README data only.
"""

import argparse
import ipaddress
import json
import os
import struct
import sys
from collections import OrderedDict, defaultdict

# --------------------------------------------------------------------------- names
SPEAKERS = {
    "10.255.0.1": "frr", "fd00:255::1": "frr",
    "10.255.0.2": "bird", "fd00:255::2": "bird",
    "10.255.0.3": "bird3", "fd00:255::3": "bird3",
}
# fixture session name for a TCP connection between two speakers, by phase:
# the bird<->frr connection is named after the phase; the frr<->bird3
# connection of the ibgp phase (a plain RR client without ADD-PATH/ENHE) gets
# the phase name + "3".
CONN_SUFFIX = {("bird", "frr"): "", ("bird3", "frr"): "3"}
SESSION_INFO = {
    "ebgp": "eBGP, bird AS 65002 (10.255.0.2) <-> frr AS 65001 (10.255.0.1), IPv4 transport",
    "ibgp": "iBGP AS 64512, bird (fd00:255::2, RR client, extended next hop + ADD-PATH rx configured) "
            "<-> frr (fd00:255::1, route reflector), IPv6 transport",
    "ibgp3": "iBGP AS 64512, bird3 (fd00:255::3, RR client, no ADD-PATH/extended next hop configured) "
             "<-> frr (fd00:255::1, route reflector), IPv6 transport (same capture as ibgp)",
}
MAX_FIXTURES = 59

MSG_TYPES = {1: "open", 2: "update", 3: "notification", 4: "keepalive", 5: "route-refresh"}
AFI = {1: "ipv4", 2: "ipv6", 25: "l2vpn"}
SAFI = {1: "unicast", 2: "multicast", 4: "labeled-unicast", 128: "vpn", 70: "evpn", 133: "flowspec"}


def fam(afi, safi):
    return f"{AFI.get(afi, 'afi' + str(afi))}-{SAFI.get(safi, 'safi' + str(safi))}"


# --------------------------------------------------------------------------- pcap
def read_pcap(path):
    """Yield (timestamp, linktype, frame bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise SystemExit(f"{path}: not a classic pcap file (pcapng is not supported)")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    _, _, _, _, _, linktype = struct.unpack(endian + "HHiIII", data[4:24])
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        frame = data[off:off + incl]
        off += incl
        yield sec + frac / (1e9 if nano else 1e6), linktype, frame


def parse_frame(linktype, frame):
    """Return (src, dst, sport, dport, seq, flags, payload) or None."""
    if linktype == 1:  # Ethernet
        etype = struct.unpack("!H", frame[12:14])[0]
        off = 14
        while etype in (0x8100, 0x88A8):
            etype = struct.unpack("!H", frame[off + 2:off + 4])[0]
            off += 4
    elif linktype == 113:  # Linux cooked v1
        etype = struct.unpack("!H", frame[14:16])[0]
        off = 16
    elif linktype == 276:  # Linux cooked v2
        etype = struct.unpack("!H", frame[0:2])[0]
        off = 20
    elif linktype in (101, 12):  # raw IP
        etype = 0x0800 if frame[0] >> 4 == 4 else 0x86DD
        off = 0
    else:
        raise SystemExit(f"unsupported link type {linktype}")
    ip = frame[off:]
    if etype == 0x0800:
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        if ip[9] != 6:
            return None
        src, dst = str(ipaddress.IPv4Address(ip[12:16])), str(ipaddress.IPv4Address(ip[16:20]))
        seg = ip[ihl:total]
    elif etype == 0x86DD:
        plen = struct.unpack("!H", ip[4:6])[0]
        nxt = ip[6]
        src, dst = str(ipaddress.IPv6Address(ip[8:24])), str(ipaddress.IPv6Address(ip[24:40]))
        seg = ip[40:40 + plen]
        while nxt in (0, 43, 60):  # hop-by-hop, routing, destination options
            nxt, hlen = seg[0], (seg[1] + 1) * 8
            seg = seg[hlen:]
        if nxt != 6:
            return None
    else:
        return None
    sport, dport, seq = struct.unpack("!HHI", seg[0:8])
    doff = (seg[12] >> 4) * 4
    flags = seg[13]
    return src, dst, sport, dport, seq, flags, seg[doff:]


class Direction:
    def __init__(self):
        self.isn = None
        self.segments = []  # (seq, time, payload)

    def stream(self):
        """Reassemble; return list of (stream offset, time, bytes) chunks merged in one bytearray."""
        if not self.segments:
            return bytearray(), []
        base = (self.isn + 1) if self.isn is not None else min(s for s, _, _ in self.segments)
        out = bytearray()
        times = []  # (start offset, time) of first appearance of each byte range
        segs = sorted(((s - base) & 0xFFFFFFFF, t, p) for s, t, p in self.segments)
        for rel, t, p in segs:
            if rel > len(out):
                raise SystemExit(f"gap in TCP stream at offset {len(out)} (next segment at {rel}): capture incomplete")
            new = p[len(out) - rel:]
            if new:
                times.append((len(out), t))
                out += new
        return out, times


def load_streams(path):
    conns = OrderedDict()  # (a, ap, b, bp) sorted key -> {(src, sport): Direction}
    first_time = None
    for t, lt, frame in read_pcap(path):
        if first_time is None:
            first_time = t
        r = parse_frame(lt, frame)
        if r is None:
            continue
        src, dst, sport, dport, seq, flags, payload = r
        if 179 not in (sport, dport):
            continue
        key = tuple(sorted([(src, sport), (dst, dport)]))
        conn = conns.setdefault(key, {"first": t, "dirs": OrderedDict()})
        d = conn["dirs"].setdefault((src, sport, dst, dport), Direction())
        if flags & 0x02:  # SYN
            d.isn = seq
        if payload:
            d.segments.append((seq, t - first_time, bytes(payload)))
    return conns


def split_bgp(buf, times):
    msgs = []
    off = 0
    ti = 0
    while off < len(buf):
        if len(buf) - off < 19:
            raise SystemExit(f"truncated BGP header at stream offset {off}")
        if buf[off:off + 16] != b"\xff" * 16:
            raise SystemExit(f"bad BGP marker at stream offset {off}")
        length = struct.unpack("!H", buf[off + 16:off + 18])[0]
        if length < 19 or off + length > len(buf):
            raise SystemExit(f"bad/truncated BGP message length {length} at stream offset {off}")
        while ti + 1 < len(times) and times[ti + 1][0] <= off:
            ti += 1
        msgs.append((times[ti][1] if times else 0.0, bytes(buf[off:off + length])))
        off += length
    return msgs


# --------------------------------------------------------------------------- BGP decoding
CAP_NAMES = {1: "multiprotocol", 2: "route-refresh", 5: "extended-nexthop", 6: "extended-message",
             9: "bgp-role", 64: "graceful-restart", 65: "4-octet-as", 69: "add-path",
             70: "enhanced-route-refresh", 71: "long-lived-graceful-restart", 73: "fqdn",
             128: "route-refresh(old-cisco)"}


def decode_open(msg):
    body = msg[19:]
    version, my_as, hold, bgp_id, optlen = struct.unpack("!BHH4sB", body[:10])
    params = body[10:10 + optlen]
    caps = []  # list of (code, value bytes)
    off = 0
    while off < len(params):
        ptype, plen = params[off], params[off + 1]
        pval = params[off + 2:off + 2 + plen]
        off += 2 + plen
        if ptype != 2:
            caps.append(("param", ptype, pval))
            continue
        coff = 0
        while coff < len(pval):
            code, clen = pval[coff], pval[coff + 1]
            caps.append(("cap", code, pval[coff + 2:coff + 2 + clen]))
            coff += 2 + clen
    info = {"version": version, "my_as": my_as, "hold": hold,
            "bgp_id": str(ipaddress.IPv4Address(bgp_id)), "caps": caps,
            "mp": [], "as4": None, "addpath": {}, "enhe": [], "gr": None, "rr": False,
            "err": False, "llgr": None, "fqdn": None, "extmsg": False, "role": None, "other": []}
    for kind, code, val in caps:
        if kind != "cap":
            info["other"].append(f"optional parameter {code}")
        elif code == 1:
            afi, _, safi = struct.unpack("!HBB", val)
            info["mp"].append((afi, safi))
        elif code == 2:
            info["rr"] = True
        elif code == 128:
            info["rr_old"] = True
        elif code == 70:
            info["err"] = True
        elif code == 65:
            info["as4"] = struct.unpack("!I", val)[0]
        elif code == 69:
            for i in range(0, len(val), 4):
                afi, safi, sr = struct.unpack("!HBB", val[i:i + 4])
                info["addpath"][(afi, safi)] = sr
        elif code == 5:
            for i in range(0, len(val), 6):
                info["enhe"].append(struct.unpack("!HHH", val[i:i + 6]))
        elif code == 64:
            flags_time = struct.unpack("!H", val[:2])[0]
            afs = []
            for i in range(2, len(val), 4):
                afi, safi, fl = struct.unpack("!HBB", val[i:i + 4])
                afs.append((afi, safi, fl))
            info["gr"] = {"flags": flags_time >> 12, "time": flags_time & 0xFFF, "afs": afs}
        elif code == 71:
            info["llgr"] = val.hex()
        elif code == 73:
            hl = val[0]
            host = val[1:1 + hl].decode(errors="replace")
            dl = val[1 + hl]
            dom = val[2 + hl:2 + hl + dl].decode(errors="replace")
            info["fqdn"] = (host, dom)
        elif code == 6:
            info["extmsg"] = True
        elif code == 9:
            info["role"] = val[0]
        else:
            info["other"].append(f"capability {code} ({val.hex()})")
    return info


def open_summary(o):
    parts = [f"version {o['version']}, my AS {o['my_as']}, hold time {o['hold']}, BGP id {o['bgp_id']}"]
    capl = []
    for kind, code, val in o["caps"]:
        if kind != "cap":
            capl.append(f"param{code}")
            continue
        name = CAP_NAMES.get(code, f"cap{code}")
        if code == 1:
            afi, _, safi = struct.unpack("!HBB", val)
            capl.append(f"mp({fam(afi, safi)})")
        elif code == 65:
            capl.append(f"4-octet-as({struct.unpack('!I', val)[0]})")
        elif code == 69:
            items = []
            for i in range(0, len(val), 4):
                afi, safi, sr = struct.unpack("!HBB", val[i:i + 4])
                items.append(f"{fam(afi, safi)}:{ {1: 'receive', 2: 'send', 3: 'send+receive'}.get(sr, sr)}")
            capl.append(f"add-path({', '.join(items)})")
        elif code == 5:
            items = []
            for i in range(0, len(val), 6):
                a, s, n = struct.unpack("!HHH", val[i:i + 6])
                items.append(f"{fam(a, s)} via {AFI.get(n, n)} next hop")
            capl.append(f"extended-nexthop({', '.join(items)})")
        elif code == 64:
            g = o["gr"]
            afs = ", ".join(f"{fam(a, s)} F={(f >> 7) & 1}" for a, s, f in g["afs"])
            capl.append(f"graceful-restart(R={(g['flags'] >> 3) & 1} N={(g['flags'] >> 2) & 1} "
                        f"time={g['time']}{'; ' + afs if afs else ''})")
        elif code == 73:
            capl.append(f"fqdn(host={o['fqdn'][0]!r}, domain={o['fqdn'][1]!r})")
        elif code == 71:
            capl.append(f"long-lived-graceful-restart({val.hex()})")
        else:
            capl.append(name + (f"({val.hex()})" if val else ""))
    parts.append("capabilities (in order): " + ", ".join(capl))
    return parts


def negotiate(a, b):
    """a, b: decoded OPENs of the two sides. Returns dict of negotiated state."""
    fams = [f for f in a["mp"] if f in b["mp"]]
    # add-path: X may send path ids for f to Y if X advertised send and Y advertised receive
    ap_a_to_b = [f for f in fams if a["addpath"].get(f, 0) & 2 and b["addpath"].get(f, 0) & 1]
    ap_b_to_a = [f for f in fams if b["addpath"].get(f, 0) & 2 and a["addpath"].get(f, 0) & 1]
    enhe = [e for e in a["enhe"] if e in b["enhe"]]
    return {"families": fams, "as4": a["as4"] is not None and b["as4"] is not None,
            "addpath": (ap_a_to_b, ap_b_to_a), "enhe": enhe,
            "gr": a["gr"] is not None and b["gr"] is not None,
            "rr": a["rr"] and b["rr"], "err": a["err"] and b["err"],
            "llgr": a["llgr"] is not None and b["llgr"] is not None,
            "extmsg": a["extmsg"] and b["extmsg"]}


def parse_prefixes(data, afi, addpath):
    out = []
    off = 0
    alen = 4 if afi == 1 else 16
    while off < len(data):
        pid = None
        if addpath:
            pid = struct.unpack("!I", data[off:off + 4])[0]
            off += 4
        plen = data[off]
        off += 1
        nb = (plen + 7) // 8
        raw = data[off:off + nb] + b"\0" * (alen - nb)
        off += nb
        if plen > alen * 8 or len(raw) != alen:
            raise ValueError(f"bad prefix length {plen}")
        addr = ipaddress.IPv4Address(raw) if afi == 1 else ipaddress.IPv6Address(raw)
        out.append(f"{addr}/{plen}" + (f" path-id {pid}" if pid is not None else ""))
    return out


ORIGINS = {0: "IGP", 1: "EGP", 2: "INCOMPLETE"}
ATTR_NAMES = {1: "ORIGIN", 2: "AS_PATH", 3: "NEXT_HOP", 4: "MULTI_EXIT_DISC", 5: "LOCAL_PREF",
              6: "ATOMIC_AGGREGATE", 7: "AGGREGATOR", 8: "COMMUNITIES", 9: "ORIGINATOR_ID",
              10: "CLUSTER_LIST", 14: "MP_REACH_NLRI", 15: "MP_UNREACH_NLRI",
              16: "EXTENDED_COMMUNITIES", 17: "AS4_PATH", 18: "AS4_AGGREGATOR", 32: "LARGE_COMMUNITY",
              35: "OTC"}


def decode_ext_comm(v):
    t, st = v[0], v[1]
    if t in (0x00, 0x40) :
        asn, val = struct.unpack("!HI", v[2:8])
        kind = {2: "rt", 3: "ro"}.get(st, f"type{t:#04x}/{st:#04x}")
        return f"({kind}, {asn}, {val})"
    if t in (0x02, 0x42):
        asn, val = struct.unpack("!IH", v[2:8])
        kind = {2: "rt", 3: "ro"}.get(st, f"type{t:#04x}/{st:#04x}")
        return f"({kind}, {asn}, {val}) [4-octet AS specific]"
    if t in (0x01, 0x41):
        ip = ipaddress.IPv4Address(v[2:6])
        val = struct.unpack("!H", v[6:8])[0]
        kind = {2: "rt", 3: "ro"}.get(st, f"type{t:#04x}/{st:#04x}")
        return f"({kind}, {ip}, {val})"
    return v.hex()


def decode_update(msg, as4, addpath_fams):
    """Return (list of summary strings, dict of facts)."""
    body = msg[19:]
    wlen = struct.unpack("!H", body[:2])[0]
    withdrawn = body[2:2 + wlen]
    alen = struct.unpack("!H", body[2 + wlen:4 + wlen])[0]
    attrs = body[4 + wlen:4 + wlen + alen]
    nlri = body[4 + wlen + alen:]
    lines = []
    facts = {"eor": None, "reach": [], "unreach": [], "attrs": []}
    v4ap = (1, 1) in addpath_fams
    if wlen:
        w = parse_prefixes(withdrawn, 1, v4ap)
        facts["unreach"] += [("ipv4-unicast", p) for p in w]
        lines.append("withdrawn routes (ipv4-unicast): " + ", ".join(w))
    off = 0
    while off < len(attrs):
        flags, code = attrs[off], attrs[off + 1]
        if flags & 0x10:
            length = struct.unpack("!H", attrs[off + 2:off + 4])[0]
            off += 4
        else:
            length = attrs[off + 2]
            off += 3
        v = attrs[off:off + length]
        off += length
        name = ATTR_NAMES.get(code, f"attr{code}")
        facts["attrs"].append(name)
        fl = "".join(c for c, bit in (("O", 0x80), ("T", 0x40), ("P", 0x20), ("E", 0x10)) if flags & bit)
        desc = f"{name} [flags {flags:#04x} {fl}]"
        if code == 1:
            desc += f" {ORIGINS.get(v[0], v[0])}"
        elif code in (2, 17):
            asz = 4 if (as4 or code == 17) else 2
            segs = []
            i = 0
            while i < len(v):
                st, n = v[i], v[i + 1]
                i += 2
                asns = [int.from_bytes(v[i + k * asz:i + (k + 1) * asz], "big") for k in range(n)]
                i += n * asz
                s = " ".join(map(str, asns))
                segs.append({1: "{" + s + "}", 2: s, 3: "(" + s + ")", 4: "[" + s + "]"}.get(st, s))
            desc += f" ({asz}-octet) " + (" ".join(segs) if segs else "<empty>")
        elif code == 3:
            desc += f" {ipaddress.IPv4Address(v)}"
        elif code in (4, 5):
            desc += f" {struct.unpack('!I', v)[0]}"
        elif code == 7 or code == 18:
            asz = 4 if (as4 or code == 18) else 2
            desc += f" AS {int.from_bytes(v[:asz], 'big')} {ipaddress.IPv4Address(v[asz:])}"
        elif code == 8:
            desc += " " + " ".join(f"{struct.unpack('!H', v[i:i+2])[0]}:{struct.unpack('!H', v[i+2:i+4])[0]}"
                                   for i in range(0, len(v), 4))
        elif code == 9:
            desc += f" {ipaddress.IPv4Address(v)}"
        elif code == 10:
            desc += " " + " ".join(str(ipaddress.IPv4Address(v[i:i + 4])) for i in range(0, len(v), 4))
        elif code == 16:
            desc += " " + " ".join(decode_ext_comm(v[i:i + 8]) for i in range(0, len(v), 8))
        elif code == 32:
            desc += " " + " ".join("(%d,%d,%d)" % struct.unpack("!III", v[i:i + 12]) for i in range(0, len(v), 12))
        elif code == 14:
            afi, safi, nhl = struct.unpack("!HBB", v[:4])
            nh = v[4:4 + nhl]
            rest = v[4 + nhl + 1:]  # skip reserved byte
            if nhl in (16, 32):
                nhs = [str(ipaddress.IPv6Address(nh[i:i + 16])) for i in range(0, nhl, 16)]
            elif nhl == 4:
                nhs = [str(ipaddress.IPv4Address(nh))]
            else:
                nhs = [nh.hex()]
            pfx = parse_prefixes(rest, afi, (afi, safi) in addpath_fams)
            facts["reach"] += [(fam(afi, safi), p) for p in pfx]
            desc += f" {fam(afi, safi)} next hop length {nhl}: {', '.join(nhs)}; NLRI: {', '.join(pfx)}"
        elif code == 15:
            afi, safi = struct.unpack("!HB", v[:3])
            pfx = parse_prefixes(v[3:], afi, (afi, safi) in addpath_fams)
            facts["unreach"] += [(fam(afi, safi), p) for p in pfx]
            if not pfx:
                facts["eor"] = fam(afi, safi)
            desc += f" {fam(afi, safi)}: " + (", ".join(pfx) if pfx else "<empty>")
        else:
            desc += f" {v.hex()}"
        lines.append(desc)
    if nlri:
        p = parse_prefixes(nlri, 1, v4ap)
        facts["reach"] += [("ipv4-unicast", x) for x in p]
        lines.append("NLRI (ipv4-unicast): " + ", ".join(p))
    if not wlen and not alen and not nlri:
        facts["eor"] = "ipv4-unicast"
    if facts["eor"] and not facts["reach"] and len(facts["attrs"]) <= 1:
        lines.insert(0, f"End-of-RIB marker for {facts['eor']}")
    else:
        facts["eor"] = None
    return lines, facts


NOTIF_CODES = {1: "Message Header Error", 2: "OPEN Message Error", 3: "UPDATE Message Error",
               4: "Hold Timer Expired", 5: "FSM Error", 6: "Cease"}
CEASE_SUB = {1: "Maximum Number of Prefixes Reached", 2: "Administrative Shutdown", 3: "Peer De-configured",
             4: "Administrative Reset", 5: "Connection Rejected", 6: "Other Configuration Change",
             7: "Connection Collision Resolution", 8: "Out of Resources", 9: "Hard Reset"}


def decode_notification(msg):
    code, sub = msg[19], msg[20]
    data = msg[21:]
    s = f"error code {code} ({NOTIF_CODES.get(code, '?')}), subcode {sub}"
    if code == 6:
        s += f" ({CEASE_SUB.get(sub, '?')})"
        if sub in (2, 4) and data:
            n = data[0]
            s += f"; shutdown communication (RFC 9003) length {n}: {data[1:1 + n].decode(errors='replace')!r}"
            if len(data) > 1 + n:
                s += f"; trailing data {data[1 + n:].hex()}"
            return [s]
    if data:
        s += f"; data {data.hex()}"
    return [s]


def decode_refresh(msg):
    afi, sub, safi = struct.unpack("!HBB", msg[19:23])
    kind = {0: "ROUTE-REFRESH request", 1: "BoRR (begin of route refresh)",
            2: "EoRR (end of route refresh)"}.get(sub, f"subtype {sub}")
    return [f"{kind} for {fam(afi, safi)}"], {0: "", 1: "borr", 2: "eorr"}.get(sub, f"sub{sub}"), fam(afi, safi)


# --------------------------------------------------------------------------- main
def analyse(session, path):
    conns = load_streams(path)
    result = []
    for key, conn in conns.items():
        dirs = conn["dirs"]
        streams = {}
        for (src, sport, dst, dport), d in dirs.items():
            buf, times = d.stream()
            streams[(src, sport, dst, dport)] = split_bgp(buf, times)
        opens = {}
        for k, msgs in streams.items():
            for t, m in msgs:
                if m[18] == 1:
                    opens[k[0]] = decode_open(m)
                    break
        addrs = list({k[0] for k in streams} | {k[2] for k in streams})
        neg = None
        if len(opens) == 2:
            a, b = list(opens)
            n = negotiate(opens[a], opens[b])
            neg = {"families": n["families"], "as4": n["as4"], "gr": n["gr"], "rr": n["rr"],
                   "err": n["err"], "llgr": n["llgr"], "extmsg": n["extmsg"], "enhe": n["enhe"],
                   "addpath_from": {a: n["addpath"][0], b: n["addpath"][1]}}
        all_msgs = []
        for (src, sport, dst, dport), msgs in streams.items():
            for i, (t, m) in enumerate(msgs):
                all_msgs.append({"t": t, "src": src, "sport": sport, "dst": dst, "dport": dport,
                                 "idx": i + 1, "count": len(msgs), "raw": m})
        # capture order; on equal timestamps the connecting side (source port != 179) first
        all_msgs.sort(key=lambda x: (x["t"], x["sport"] == 179))
        result.append({"key": key, "first": conn["first"], "opens": opens, "neg": neg, "msgs": all_msgs})
    return result


def describe(m, neg):
    """Add type, summary lines, qualifier to message record m."""
    raw = m["raw"]
    t = raw[18]
    m["type"] = MSG_TYPES.get(t, f"type{t}")
    m["qual"] = ""
    if t == 1:
        m["lines"] = open_summary(decode_open(raw))
    elif t == 2:
        ap = neg["addpath_from"][m["src"]] if neg else []
        lines, facts = decode_update(raw, neg["as4"] if neg else False, ap)
        m["lines"] = lines
        m["facts"] = facts
        if facts["eor"]:
            m["qual"] = "eor-" + facts["eor"].replace("-unicast", "")
        elif facts["unreach"] and not facts["reach"]:
            m["qual"] = "withdraw"
    elif t == 3:
        m["lines"] = decode_notification(raw)
        if raw[19] == 6 and raw[20] in (2, 4) and len(raw) > 21:
            m["qual"] = "shutdown-msg"
        elif raw[19] == 6:
            m["qual"] = "cease"
    elif t == 4:
        m["lines"] = ["KEEPALIVE (header only)"]
    elif t == 5:
        lines, q, f = decode_refresh(raw)
        m["lines"] = lines
        m["qual"] = "-".join(x for x in (q, f.replace("-unicast", "")) if x)
    else:
        m["lines"] = ["unknown message type"]


def neg_lines(neg, opens, src, dst):
    if not neg:
        return ["negotiated: unknown (OPENs not both captured)"]
    sname, dname = SPEAKERS.get(src, src), SPEAKERS.get(dst, dst)
    out = []
    out.append(f"negotiated: 4-octet AS: {'yes (both sides advertised capability 65)' if neg['as4'] else 'NO (2-octet AS_PATH)'}")
    out.append("negotiated: families: " + ", ".join(fam(*f) for f in neg["families"]))
    ap = neg["addpath_from"][src]
    apr = neg["addpath_from"][dst]
    out.append(f"negotiated: ADD-PATH for messages {sname} -> {dname} (this direction; decode NLRI with path ids): "
               + (", ".join(fam(*f) for f in ap) if ap else "none"))
    out.append(f"negotiated: ADD-PATH for messages {dname} -> {sname}: "
               + (", ".join(fam(*f) for f in apr) if apr else "none"))
    out.append("negotiated: extended next hop (RFC 8950): "
               + (", ".join(f"{fam(a, s)} via {AFI.get(n, n)}" for a, s, n in neg["enhe"]) if neg["enhe"] else "none"))
    out.append(f"negotiated: graceful restart: {'both' if neg['gr'] else 'no'}; route refresh: "
               f"{'both' if neg['rr'] else 'no'}; enhanced route refresh: {'both' if neg['err'] else 'no'}; "
               f"extended message: {'both' if neg['extmsg'] else 'no'}")
    return out


def one_line(m):
    """Compact one-line summary of a described message for the README table."""
    import re
    parts = [re.sub(r" \[flags 0x[0-9a-f]+ [A-Z]*\]", "", line).strip() for line in m["lines"]]
    if m["type"] == "open":
        parts = [parts[0], parts[1].replace("capabilities (in order): ", "caps: ")]
    return "; ".join(parts).replace("|", "\\|")


def tool_versions():
    import subprocess
    out = {}
    for name, cmd in (("bird", ["bird", "--version"]), ("frr", ["/usr/lib/frr/bgpd", "--version"])):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            out[name] = (r.stdout + r.stderr).strip().splitlines()[0]
        except Exception:  # noqa: BLE001 - tool missing: README says unknown
            out[name] = "unknown"
    pkgs = []
    for pkg in ("bird2", "frr"):
        try:
            r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True,
                               timeout=10)
            if r.returncode == 0:
                pkgs.append(f"{pkg} {r.stdout.strip()}")
        except Exception:  # noqa: BLE001
            pass
    out["pkgs"] = ", ".join(pkgs) or "unknown"
    return out


README_HEAD = """# BGP wire fixtures captured from BIRD 2 and FRR

Every `*.hex` file here is one complete BGP message (16-byte marker, length,
type and body) exactly as it was sent on a real TCP session between **{bird}**
and **FRR {frr}** (`bgpd`), Debian 12 packages ({pkgs}).  The files are
generated by `testbed/scripts/capture-fixtures.sh`; do not edit them by hand.

## File format

* Leading lines starting with `#` describe the message: sender and receiver
  (address and port), session, position in the TCP stream, the capabilities
  negotiated on that session, and a decoded summary of the content.  The
  important line for decoding is `negotiated: ADD-PATH for messages X -> Y (this
  direction; ...)`: it lists the families for which the sender includes a 4-byte
  path identifier before every prefix (sender advertised ADD-PATH *send* and the
  receiver advertised *receive* for that AFI/SAFI, RFC 7911).  AS numbers in
  AS_PATH/AGGREGATOR are 4 octets wide on every session here (4-octet AS
  capability advertised by both sides).
* Then the message as lowercase hex, 32 bytes (64 hex digits) per line.
  Concatenate the non-`#` lines and hex-decode to get the bytes.
* Names: `<sender>-<session>-<nn>-<type>[-<detail>].hex`; `nn` is the order in
  which the messages appeared in that session (both directions interleaved).
  Identical byte strings are stored once (first occurrence); the header lists
  where else the same bytes were sent (e.g. the one KEEPALIVE, End-of-RIB
  markers, updates repeated after ROUTE-REFRESH).

## How they were captured

`testbed/scripts/capture-fixtures.sh` (root; needs `bird2 frr tcpdump`):

1. creates two network namespaces joined by a veth pair:
   namespace A (BIRD) `10.255.0.2/24`, `fd00:255::2/64` (and `10.255.0.3`,
   `fd00:255::3` for the third speaker in the ibgp phase), no link-local address;
   namespace B (FRR) `10.255.0.1/24`, `fd00:255::1/64`, `fe80::1/64`;
2. runs BIRD (`bird -f -c CONF -s SOCK -P PID` in namespace A) and FRR `bgpd`
   without zebra (`bgpd -Z -n -S ...` in namespace B) with the configurations in
   `testbed/scripts/fixtures-conf/`, and `tcpdump -w` on FRR's veth;
3. drives each session through its events with `birdc` / `vtysh`, waiting by
   polling (bounded) for every state change;
4. `testbed/scripts/extract-bgp-fixtures.py` reassembles the TCP streams of
   the pcaps (written to `testbed/captures/`; git-ignored by `*.pcap`, rerun
   the script to regenerate them) and writes these files and this
   README.

Commands that work (namespace names/paths as in the script; no system
service, no zebra, nothing outside the namespaces):

```sh
# BIRD 2 in namespace A, foreground, own config / control socket / pid file
ip netns exec NS_A bird -f -c WORK/bird.conf -s WORK/bird.ctl -P WORK/bird.pid
birdc -s WORK/bird.ctl show protocols all ebgp1    # birdc needs no netns
birdc -s WORK/bird.ctl disable static4_wd          # withdraw that protocol's routes
birdc -s WORK/bird.ctl reload in ebgp1             # sends ROUTE-REFRESH
birdc -s WORK/bird.ctl disable ibgp1 '"merle-fixture-ibgp"'   # Cease + shutdown communication
# FRR bgpd in namespace B without zebra (-Z), no kernel FIB (-n), as root without
# privilege drop (-S: root is not in group frrvty, so "-u root -g root" fails),
# no TCP vty (-P 0), own vty socket directory, pid file and zserv path
ip netns exec NS_B /usr/lib/frr/bgpd -f DIR/bgpd.conf -i DIR/bgpd.pid -z DIR/zserv.api \
    --vty_socket DIR -Z -n -S -P 0 --limit-fds 1024 --log file:WORK/frr.log --log-level info
vtysh --vty_socket DIR -d bgpd -c 'show bgp neighbors 10.255.0.2 json'   # no netns needed
vtysh --vty_socket DIR -d bgpd -c 'clear bgp ipv4 unicast 10.255.0.2 soft in'
vtysh --vty_socket DIR -d bgpd -c 'configure terminal' -c 'router bgp 65001' \
    -c 'neighbor 10.255.0.2 shutdown message merle-fixture'
# capture
ip netns exec NS_B tcpdump -i VETH_B -U -n -s 0 -Z root -w ebgp.pcap 'tcp port 179'
```

FRR without zebra needs in its config: `bgp router-id`, `no bgp network
import-check` (else `network` statements never become valid), `no bgp
ebgp-requires-policy` (or policies), and an explicit IPv6 next hop by route-map
for IPv6 routes on an IPv4 session (it cannot find its interface addresses).
BIRD's side of the veth has no link-local address: BIRD would put its
link-local address into the IPv6 next hop (32 bytes) of a direct eBGP session,
and bgpd without zebra rejects that UPDATE (NOTIFICATION UPDATE error /
Invalid Network Field, then reconnects).

Phases:

* **ebgp** — BIRD AS 65002 (10.255.0.2) ↔ FRR AS 65001 (10.255.0.1), IPv4
  transport, families ipv4-unicast and ipv6-unicast (IPv6 via MP-BGP with IPv6
  next hop).  BIRD originates 10.244.1.0/26 and fd00:244:1::/122 (MED 50,
  community 65002:100, extended community rt 65002:7, large community
  65002:1:2), 10.244.2.0/26 (community 65002:101), 10.244.9.0/26 and
  fd00:244:9::/122 (same attributes as 10.244.1.0/26, withdrawn later).  FRR
  originates 10.244.3.0/26 and fd00:244:3::/122 (community 65001:200, large
  community 65001:3:4), 10.244.4.0/26 and fd00:244:4::/122 (withdrawn later),
  and the aggregate 10.244.0.0/16 (ATOMIC_AGGREGATE, AGGREGATOR).  FRR sets its
  IPv6 next hop to fd00:255::1 + fe80::1 (32-byte next hop) by route-map.
  Sequence: OPEN/KEEPALIVE, initial updates + End-of-RIB both ways; BIRD
  withdraws 10.244.9.0/26 then fd00:244:9::/122; FRR withdraws 10.244.4.0/26
  then fd00:244:4::/122; FRR sends ROUTE-REFRESH ipv4 (`clear bgp ipv4 unicast
  10.255.0.2 soft in`) and BIRD answers BoRR, updates, EoRR; BIRD sends
  ROUTE-REFRESH ipv4+ipv6 (`birdc reload in ebgp1`), FRR answers per family with
  BoRR, updates, EoRR; FRR `neighbor 10.255.0.2 shutdown message merle-fixture`
  → NOTIFICATION Cease/Administrative Shutdown with shutdown communication.
  FRR's session is passive, BIRD connects.
* **ibgp** — AS 64512 over IPv6 transport.  FRR (fd00:255::1, router id and
  cluster id 10.255.0.1) is route reflector; BIRD (fd00:255::2, router id
  10.255.0.2) and a second BIRD "bird3" (fd00:255::3, router id 10.255.0.3, in
  the same namespace, both with `strict bind`) are its clients.  BIRD originates
  10.244.11.0/26 and fd00:244:11::/122 (LOCAL_PREF 200, community 64512:11) and
  uses RFC 8950 extended next hop for ipv4-unicast; bird3 originates
  10.244.21.0/26 and fd00:244:21::/122 (community 64512:21), which FRR reflects
  to BIRD with ORIGINATOR_ID 10.255.0.3 and CLUSTER_LIST 10.255.0.1; FRR
  originates 10.244.13.0/26 and fd00:244:13::/122 (community 64512:1) and
  withdraws them later; finally `birdc disable ibgp1 "merle-fixture-ibgp"` →
  NOTIFICATION Cease/Administrative Shutdown with shutdown communication from
  BIRD.  The frr↔bird connection gives session `ibgp`, the frr↔bird3
  connection of the same capture gives session `ibgp3`.

Quirks visible in the captures (all real behaviour, worth a test each):

* FRR 8.4 advertises ADD-PATH *send+receive* for **every** family as soon as
  `addpath-tx-...` is configured for any one family (here only ipv4-unicast in
  ebgp, only ipv6-unicast in ibgp) and then sends path identifier **0** for the
  families without an addpath policy (see `fd00:244:3::/122 path-id 0`).  Without
  any `addpath-tx` it advertises *receive* only (ibgp3).
* FRR encodes AS_PATH with the extended-length flag (flags 0x50) even when short;
  BIRD uses 0x40.  FRR sends MULTI_EXIT_DISC 0 for locally originated routes.
* Both put MP_REACH_NLRI / MP_UNREACH_NLRI first, flags 0x90 (extended
  length), but the empty MP_UNREACH_NLRI of an IPv6 End-of-RIB has flags 0x80
  (both implementations).  The IPv4 End-of-RIB is the 23-byte empty UPDATE.
* FRR does not emit attributes in type-code order: LARGE_COMMUNITY (32) comes
  before EXTENDED_COMMUNITIES (16) (e.g. FRR's IPv6 UPDATEs re-advertising BIRD's routes).  A decoder
  must not insist on ascending type codes.
* FRR does not filter routes back towards their originator: it sends BIRD's own
  routes back over eBGP (AS_PATH 65001 65002) and reflects BIRD's routes back to
  BIRD over iBGP (ORIGINATOR_ID 10.255.0.2); the receiver must drop them.
* With extended next hop negotiated FRR sends IPv4 NLRI in MP_REACH_NLRI with a
  16-byte IPv6 next hop and its IPv4 withdrawals in MP_UNREACH_NLRI; when
  reflecting bird3's IPv4 route (next hop 10.255.0.3) to BIRD it replaces the
  next hop with its own fd00:255::1.
* bgpd without zebra does not know its interface addresses: on the IPv6-transport
  session without extended next hop (ibgp3) it sends NEXT_HOP 0.0.0.0 for IPv4
  routes it originates or reflects from an extended-next-hop peer.
* FRR's GRACEFUL_RESTART capability has the Restart-State (R) and Notification
  (N) bits set after a fresh start; BIRD's has neither.  bird3 has no
  `graceful restart on`, so it sends the capability with no AFI/SAFI tuples
  (restart "aware" only).  Both send a LONG_LIVED_GRACEFUL_RESTART capability
  (BIRD's is empty).
* ADD-PATH path identifiers are per-sender and per-family: BIRD and FRR number
  them independently (FRR's path ids for the same prefix differ from BIRD's).
* FRR sends the old Cisco ROUTE-REFRESH capability (128) besides code 2, an FQDN
  capability (73, hostname `merle-frr` from the config) and EXTENDED MESSAGE
  (6), which BIRD 2 does not advertise by default, so it is not negotiated.

"""


def write_readme(path, summary, versions):
    lines = [README_HEAD.format(bird=versions["bird"], frr=versions["frr"].replace("bgpd version ", ""),
                                pkgs=versions["pkgs"])]
    lines.append("## Negotiated capabilities per session\n")
    for sess in summary:
        for c in sess["connections"]:
            if not c["name"]:
                continue
            n = c["neg"]
            lines.append(f"### {c['name']} ({', '.join(c['endpoints'])}; capture `testbed/captures/{sess['pcap']}`)\n")
            lines.append(SESSION_INFO.get(c["name"], "") + "\n")
            lines.append("| capability | negotiated |")
            lines.append("| --- | --- |")
            if n:
                names = list(n["addpath_from"])
                lines.append(f"| 4-octet AS | {'yes' if n['as4'] else 'no'} |")
                lines.append(f"| multiprotocol families | {', '.join(n['families'])} |")
                for a in names:
                    b = [x for x in names if x != a][0]
                    lines.append(f"| ADD-PATH path ids in {a} → {b} UPDATEs | "
                                 f"{', '.join(n['addpath_from'][a]) or 'none'} |")
                lines.append(f"| extended next hop (RFC 8950) | {', '.join(n['enhe']) or 'none'} |")
                lines.append(f"| graceful restart | {'both advertised' if n['gr'] else 'no'} |")
                lines.append(f"| long-lived graceful restart | {'both advertised' if n['llgr'] else 'no'} |")
                lines.append(f"| route refresh / enhanced route refresh | {'yes' if n['rr'] else 'no'} / "
                             f"{'yes' if n['err'] else 'no'} |")
                lines.append(f"| extended message | {'yes' if n['extmsg'] else 'no'} |")
            lines.append("")
            for who, ol in c["opens"].items():
                lines.append(f"* OPEN from {who}: {ol[0]}; {ol[1]}")
            lines.append("")
    lines.append("## Files\n")
    lines.append("| file | sender → receiver | type | content |")
    lines.append("| --- | --- | --- | --- |")
    for sess in summary:
        for c in sess["connections"]:
            for r in c["messages"]:
                if r["file"] and r["file"][0] not in "=~":
                    t = r["type"].upper() + (f" ({r['qual']})" if r["qual"] else "")
                    lines.append(f"| `{r['file']}` | {r['from']} → {r['to']} | {t} | {r['one']} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="fixture directory (*.hex and README.md are rewritten)")
    ap.add_argument("--dump", action="store_true", help="print all messages, write nothing")
    ap.add_argument("captures", nargs="+", help="SESSION=FILE.pcap")
    args = ap.parse_args()

    seen = {}
    fixtures = []
    summary = []
    counters = defaultdict(int)
    for spec in args.captures:
        phase, path = spec.split("=", 1)
        conns = analyse(phase, path)
        sess_sum = {"phase": phase, "pcap": os.path.basename(path), "connections": []}
        def conn_session(c):
            names = tuple(sorted(SPEAKERS.get(a, a) for (a, _) in c["key"]))
            return phase + CONN_SUFFIX[names] if names in CONN_SUFFIX else None
        # the bird<->frr connection first, so it gets first claim on shared bytes
        conns.sort(key=lambda c: (conn_session(c) != phase, c["first"]))
        for c in conns:
            session = conn_session(c)
            csum = {"name": session, "endpoints": [f"{SPEAKERS.get(a, a)} {a} port {p}" for a, p in c["key"]],
                    "neg": None, "opens": {}, "messages": []}
            if c["neg"]:
                n = c["neg"]
                csum["neg"] = {"families": [fam(*f) for f in n["families"]], "as4": n["as4"],
                               "gr": n["gr"], "rr": n["rr"], "err": n["err"], "extmsg": n["extmsg"],
                               "llgr": n["llgr"],
                               "enhe": [f"{fam(a, s)} via {AFI.get(x, x)}" for a, s, x in n["enhe"]],
                               "addpath_from": {SPEAKERS.get(k, k): [fam(*f) for f in v]
                                                for k, v in n["addpath_from"].items()}}
            for addr, o in c["opens"].items():
                csum["opens"][SPEAKERS.get(addr, addr)] = open_summary(o)
            for m in c["msgs"]:
                describe(m, c["neg"])
                sname, dname = SPEAKERS.get(m["src"], m["src"]), SPEAKERS.get(m["dst"], m["dst"])
                rec = {"from": sname, "to": dname, "type": m["type"], "qual": m["qual"],
                       "one": one_line(m), "file": None}
                if args.dump:
                    print(f"--- {session or phase} t={m['t']:.3f} {sname}->{dname} #{m['idx']} {m['type']} "
                          f"{m['qual']} len={len(m['raw'])}")
                    for line in m["lines"]:
                        print("    " + line)
                if session:
                    where = f"{session} {sname}->{dname} message #{m['idx']} (t={m['t']:.3f}s)"
                    shape = None
                    if m["qual"] == "withdraw":
                        # withdraw-only UPDATEs that differ only in the prefix are stored once
                        shape = (session, sname, tuple(f for f, _ in m["facts"]["unreach"]),
                                 tuple("path-id" in p for _, p in m["facts"]["unreach"]))
                    if m["raw"] in seen:
                        seen[m["raw"]]["dups"].append(where)
                        rec["file"] = "=" + seen[m["raw"]]["name"]
                    elif shape in seen:
                        seen[shape]["similar"].append(where + ": " + one_line(m))
                        rec["file"] = "~" + seen[shape]["name"]
                    else:
                        counters[session] += 1
                        tname = m["type"] + ("-" + m["qual"] if m["qual"] else "")
                        fname = f"{sname}-{session}-{counters[session]:02d}-{tname}.hex"
                        fx = {"name": fname, "m": m, "session": session, "neg": c["neg"],
                              "dups": [], "similar": [], "sname": sname, "dname": dname}
                        seen[m["raw"]] = fx
                        if shape:
                            seen[shape] = fx
                        fixtures.append(fx)
                        rec["file"] = fname
                csum["messages"].append(rec)
            sess_sum["connections"].append(csum)
        summary.append(sess_sum)
        if args.dump:
            for csum in sess_sum["connections"]:
                print(f"=== {csum['name']} connection {csum['endpoints']}")
                print(json.dumps(csum["neg"], indent=1))
                for who, lines in csum["opens"].items():
                    print(f"  OPEN from {who}:")
                    for line in lines:
                        print("    " + line)

    if args.dump:
        return
    if not args.out:
        ap.error("--out is required unless --dump")
    if len(fixtures) > MAX_FIXTURES:
        print(f"warning: {len(fixtures)} fixtures (more than {MAX_FIXTURES})", file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    for old in os.listdir(args.out):
        if old.endswith(".hex"):
            os.remove(os.path.join(args.out, old))
    for fx in fixtures:
        m = fx["m"]
        raw = m["raw"]
        hdr = [f"{fx['name']}: real BGP {m['type'].upper()} captured from a live session (byte-exact, marker included)",
               f"sender: {fx['sname']} ({m['src']} port {m['sport']}) -> {fx['dname']} ({m['dst']} port {m['dport']})",
               f"session: {fx['session']}: {SESSION_INFO.get(fx['session'], '')}",
               f"position: message #{m['idx']} of {m['count']} sent by {fx['sname']} on this TCP connection, "
               f"t={m['t']:.3f}s into the capture; length {len(raw)} bytes"]
        hdr += neg_lines(fx["neg"], None, m["src"], m["dst"])
        hdr += ["content: " + line for line in m["lines"]]
        for d in fx["dups"][:6]:
            hdr.append(f"identical bytes also sent: {d}")
        if len(fx["dups"]) > 6:
            hdr.append(f"identical bytes also sent {len(fx['dups']) - 6} more times")
        for d in fx["similar"]:
            hdr.append(f"same layout, other prefix, not stored: {d}")
        hexs = raw.hex()
        body = [hexs[i:i + 64] for i in range(0, len(hexs), 64)]
        with open(os.path.join(args.out, fx["name"]), "w") as f:
            f.write("".join(f"# {h}".rstrip() + "\n" for h in hdr) + "\n".join(body) + "\n")
    write_readme(os.path.join(args.out, "README.md"), summary, tool_versions())
    print(f"wrote {len(fixtures)} fixtures and README.md to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
