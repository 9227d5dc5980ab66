#!/usr/bin/env bash
# Capture real BGP sessions between BIRD 2 and FRR bgpd inside private network
# namespaces and turn the captured messages into byte-exact codec fixtures.
#
#   testbed/scripts/capture-fixtures.sh [PCAP_DIR]
#
# Needs root, iproute2, bird2, frr, tcpdump, python3
#   (DEBIAN_FRONTEND=noninteractive apt-get install -y bird2 frr tcpdump).
# The system bird/frr services are neither needed nor touched.
#
# Phases (each with fresh daemons, one pcap per phase):
#   ebgp: BIRD AS 65002 (ns A, 10.255.0.2) <-> FRR AS 65001 (ns B, 10.255.0.1),
#         IPv4 transport, ipv4+ipv6 unicast; withdraws, route refresh from both
#         sides, FRR administrative shutdown with a shutdown communication.
#   ibgp: AS 64512 over IPv6 transport; FRR (fd00:255::1) is route reflector,
#         BIRD (fd00:255::2) and a second BIRD "bird3" (fd00:255::3, same ns A)
#         are clients; FRR withdraws, BIRD shuts down with a shutdown communication.
#
# Afterwards testbed/scripts/extract-bgp-fixtures.py writes bgpd/tests/fixtures/*.hex.
# All traffic stays on the veth between the two namespaces this script creates;
# the EXIT trap kills every daemon it started and deletes the namespaces.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
CONF_DIR=$SCRIPT_DIR/fixtures-conf
PCAP_DIR=${1:-$REPO/testbed/captures}
FIXTURE_DIR=${FIXTURE_DIR:-$REPO/bgpd/tests/fixtures}
WAIT_SECS=${WAIT_SECS:-60}

NS_A=merle-bird-$$
NS_B=merle-frr-$$
VETH_A=mbird$$
VETH_B=mfrr$$
WORK=$(mktemp -d /tmp/merle-capture.XXXXXX)
FRR_BGPD=/usr/lib/frr/bgpd

declare -a DAEMON_PIDS=()
declare -a NETNS_CREATED=()
TCPDUMP_PID=""

log() { printf '[capture %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

stop_pid() {   # stop_pid PID: TERM, wait up to 5 s, then KILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? pid ns
  set +e
  [[ -n $TCPDUMP_PID ]] && stop_pid "$TCPDUMP_PID"
  for pid in "${DAEMON_PIDS[@]}"; do
    stop_pid "$pid"
    rm -rf "/var/tmp/frr/bgpd.$pid"
  done
  for ns in "${NETNS_CREATED[@]}"; do
    # anything still running inside our own namespaces was started by us
    for pid in $(ip netns pids "$ns" 2>/dev/null); do stop_pid "$pid"; done
    ip netns del "$ns" 2>/dev/null
  done
  rmdir /var/tmp/frr 2>/dev/null
  if (( rc != 0 )); then
    log "FAILED (rc=$rc); daemon logs follow"
    for f in "$WORK"/*.log; do [[ -f $f ]] && { echo "== $f"; tail -n 40 "$f"; }; done >&2
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for SECS DESCRIPTION CMD...: poll CMD every 0.5 s until it succeeds
wait_for() {
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS >= end )); then log "timeout after ${secs}s waiting for: $what"; return 1; fi
    sleep 0.5
  done
  log "ok: $what"
}

for tool in ip bird birdc vtysh tcpdump python3 "$FRR_BGPD"; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install bird2 frr tcpdump)" >&2; exit 1; }
done
[[ $(id -u) == 0 ]] || { echo "must run as root" >&2; exit 1; }

# ---------------------------------------------------------------- network
setup_netns() {
  ip netns add "$NS_A"; NETNS_CREATED+=("$NS_A")
  ip netns add "$NS_B"; NETNS_CREATED+=("$NS_B")
  local ns
  for ns in "$NS_A" "$NS_B"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.accept_dad=0
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0
    # no automatic link-local addresses (see below); deterministic addressing
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.addr_gen_mode=1
    ip -n "$ns" link set lo up
  done
  ip -n "$NS_A" link add "$VETH_A" address 02:00:0a:ff:00:02 type veth \
    peer name "$VETH_B" address 02:00:0a:ff:00:01 netns "$NS_B"
  ip -n "$NS_A" addr add 10.255.0.2/24 dev "$VETH_A"
  ip -n "$NS_A" addr add fd00:255::2/64 dev "$VETH_A" nodad
  ip -n "$NS_B" addr add 10.255.0.1/24 dev "$VETH_B"
  ip -n "$NS_B" addr add fd00:255::1/64 dev "$VETH_B" nodad
  # Only FRR's side gets a link-local address.  BIRD puts the interface's
  # link-local address into the IPv6 next hop (32-byte next hop) of a direct
  # eBGP session; bgpd without zebra knows no interfaces and answers such an
  # UPDATE with NOTIFICATION "Invalid network field".  FRR sends fe80::1 as
  # link-local next hop via route-map instead, so a 32-byte next hop is
  # still captured (in the FRR -> BIRD direction).
  ip -n "$NS_B" addr add fe80::1/64 dev "$VETH_B" nodad
  ip -n "$NS_A" link set "$VETH_A" up
  ip -n "$NS_B" link set "$VETH_B" up
  wait_for 10 "veth reachable" ip netns exec "$NS_B" ping -c1 -W1 10.255.0.2
  wait_for 10 "veth reachable (v6)" ip netns exec "$NS_B" ping -6 -c1 -W1 fd00:255::2
  ip -n "$NS_A" -6 addr show dev "$VETH_A" >&2
}

# ---------------------------------------------------------------- daemons
start_tcpdump() {   # start_tcpdump FILE
  ip netns exec "$NS_B" tcpdump -i "$VETH_B" -U -n -s 0 -Z root -w "$1" 'tcp port 179' \
    >"$WORK/tcpdump.log" 2>&1 &
  TCPDUMP_PID=$!
  wait_for 10 "tcpdump listening" grep -q 'listening on' "$WORK/tcpdump.log"
}

stop_tcpdump() {
  sleep 1   # let the last segments and ACKs arrive
  kill -INT "$TCPDUMP_PID"
  local i
  for i in $(seq 50); do kill -0 "$TCPDUMP_PID" 2>/dev/null || break; sleep 0.1; done
  stop_pid "$TCPDUMP_PID"
  TCPDUMP_PID=""
  cat "$WORK/tcpdump.log" >&2
}

start_frr() {   # start_frr CONF NAME -> FRR_VTY dir; bgpd without zebra
  local conf=$1 name=$2
  local dir=$WORK/$name
  mkdir -p "$dir"
  cp "$conf" "$dir/bgpd.conf"
  ip netns exec "$NS_B" "$FRR_BGPD" -f "$dir/bgpd.conf" -i "$dir/bgpd.pid" \
    -z "$dir/zserv.api" --vty_socket "$dir" -Z -n -S -P 0 --limit-fds 1024 \
    --log "file:$WORK/$name.log" --log-level info \
    >"$WORK/$name.stdout.log" 2>&1 &
  DAEMON_PIDS+=($!)
  FRR_VTY=$dir
  wait_for 20 "bgpd vty socket" test -S "$dir/bgpd.vty"
}

vty() { vtysh --vty_socket "$FRR_VTY" -d bgpd "$@"; }

start_bird() {  # start_bird CONF NAME -> socket $WORK/NAME.ctl
  local conf=$1 name=$2
  cp "$conf" "$WORK/$name.conf"
  ip netns exec "$NS_A" bird -f -c "$WORK/$name.conf" -s "$WORK/$name.ctl" -P "$WORK/$name.pid" \
    >"$WORK/$name.log" 2>&1 &
  DAEMON_PIDS+=($!)
  wait_for 20 "$name control socket" test -S "$WORK/$name.ctl"
}

stop_daemons() {
  local pid
  for pid in "${DAEMON_PIDS[@]}"; do
    stop_pid "$pid"
    rm -rf "/var/tmp/frr/bgpd.$pid"
  done
  DAEMON_PIDS=()
}

birdc_() { local sock=$1; shift; birdc -s "$sock" "$@"; }

bird_established() { birdc -s "$1" show protocols "$2" | grep -q Established; }
bird_not_established() { ! bird_established "$@"; }
frr_established() { vty -c "show bgp neighbors $1 json" | grep -q '"bgpState":"Established"'; }
frr_not_established() { ! frr_established "$1"; }
frr_has() { vty -c "show bgp $1 unicast $2" | grep -q "Paths: (.* available"; }
frr_lacks() { ! frr_has "$1" "$2"; }
bird_has() { birdc -s "$1" show route for "$2" protocol "$3" | grep -q "$2"; }
bird_has_exact() { birdc -s "$1" show route "$2" protocol "$3" | grep -q "$2"; }
bird_lacks_exact() { ! bird_has_exact "$@"; }

# ---------------------------------------------------------------- phase 1: eBGP
phase_ebgp() {
  local pcap=$PCAP_DIR/ebgp.pcap sock=$WORK/bird.ctl
  log "=== phase ebgp"
  start_tcpdump "$pcap"
  start_frr "$CONF_DIR/frr-ebgp.conf" frr-ebgp
  start_bird "$CONF_DIR/bird-ebgp.conf" bird
  wait_for "$WAIT_SECS" "bird ebgp1 Established" bird_established "$sock" ebgp1
  wait_for "$WAIT_SECS" "frr sees 10.255.0.2 Established" frr_established 10.255.0.2
  # initial routing exchange incl. End-of-RIB in both directions
  wait_for "$WAIT_SECS" "frr has 10.244.1.0/26" frr_has ipv4 10.244.1.0/26
  wait_for "$WAIT_SECS" "frr has fd00:244:1::/122" frr_has ipv6 fd00:244:1::/122
  wait_for "$WAIT_SECS" "frr has 10.244.9.0/26" frr_has ipv4 10.244.9.0/26
  wait_for "$WAIT_SECS" "frr has fd00:244:9::/122" frr_has ipv6 fd00:244:9::/122
  wait_for "$WAIT_SECS" "bird has 10.244.3.0/26" bird_has_exact "$sock" 10.244.3.0/26 ebgp1
  wait_for "$WAIT_SECS" "bird has fd00:244:3::/122" bird_has_exact "$sock" fd00:244:3::/122 ebgp1
  wait_for "$WAIT_SECS" "bird has 10.244.0.0/16 (aggregate)" bird_has_exact "$sock" 10.244.0.0/16 ebgp1
  sleep 3   # End-of-RIB markers follow the initial updates

  log "--- BIRD withdraws 10.244.9.0/26 and fd00:244:9::/122"
  birdc_ "$sock" disable static4_wd
  wait_for "$WAIT_SECS" "frr lost 10.244.9.0/26" frr_lacks ipv4 10.244.9.0/26
  birdc_ "$sock" disable static6_wd
  wait_for "$WAIT_SECS" "frr lost fd00:244:9::/122" frr_lacks ipv6 fd00:244:9::/122
  sleep 1

  log "--- FRR withdraws 10.244.4.0/26 and fd00:244:4::/122"
  vty -c 'configure terminal' -c 'router bgp 65001' -c 'address-family ipv4 unicast' \
      -c 'no network 10.244.4.0/26'
  wait_for "$WAIT_SECS" "bird lost 10.244.4.0/26" bird_lacks_exact "$sock" 10.244.4.0/26 ebgp1
  vty -c 'configure terminal' -c 'router bgp 65001' -c 'address-family ipv6 unicast' \
      -c 'no network fd00:244:4::/122'
  wait_for "$WAIT_SECS" "bird lost fd00:244:4::/122" bird_lacks_exact "$sock" fd00:244:4::/122 ebgp1
  sleep 1

  log "--- FRR requests ROUTE-REFRESH (ipv4 unicast)"
  vty -c 'clear bgp ipv4 unicast 10.255.0.2 soft in'
  sleep 3
  log "--- BIRD requests ROUTE-REFRESH (both channels)"
  birdc_ "$sock" reload in ebgp1
  sleep 3

  log "--- FRR administrative shutdown with shutdown communication"
  vty -c 'configure terminal' -c 'router bgp 65001' \
      -c 'neighbor 10.255.0.2 shutdown message merle-fixture'
  wait_for "$WAIT_SECS" "bird ebgp1 down" bird_not_established "$sock" ebgp1
  birdc_ "$sock" show protocols all ebgp1 >"$WORK/bird-ebgp-final.txt" || true
  stop_tcpdump
  stop_daemons
}

# ---------------------------------------------------------------- phase 2: iBGP
phase_ibgp() {
  local pcap=$PCAP_DIR/ibgp.pcap sock=$WORK/bird.ctl sock3=$WORK/bird3.ctl
  log "=== phase ibgp"
  # addresses of the third speaker bird3 (added only now: in the ebgp phase
  # BIRD would otherwise pick fd00:255::3 as its IPv6 next hop)
  ip -n "$NS_A" addr add 10.255.0.3/24 dev "$VETH_A"
  ip -n "$NS_A" addr add fd00:255::3/64 dev "$VETH_A" nodad
  start_tcpdump "$pcap"
  start_frr "$CONF_DIR/frr-ibgp.conf" frr-ibgp
  # bird3 first, so that its routes are already at the reflector when bird's session comes up
  start_bird "$CONF_DIR/bird3-ibgp.conf" bird3
  wait_for "$WAIT_SECS" "bird3 ibgp3 Established" bird_established "$sock3" ibgp3
  wait_for "$WAIT_SECS" "frr has 10.244.21.0/26" frr_has ipv4 10.244.21.0/26
  wait_for "$WAIT_SECS" "frr has fd00:244:21::/122" frr_has ipv6 fd00:244:21::/122
  start_bird "$CONF_DIR/bird-ibgp.conf" bird
  wait_for "$WAIT_SECS" "bird ibgp1 Established" bird_established "$sock" ibgp1
  wait_for "$WAIT_SECS" "frr has 10.244.11.0/26" frr_has ipv4 10.244.11.0/26
  wait_for "$WAIT_SECS" "frr has fd00:244:11::/122" frr_has ipv6 fd00:244:11::/122
  wait_for "$WAIT_SECS" "bird has 10.244.21.0/26 (reflected)" bird_has_exact "$sock" 10.244.21.0/26 ibgp1
  wait_for "$WAIT_SECS" "bird has fd00:244:21::/122 (reflected)" bird_has_exact "$sock" fd00:244:21::/122 ibgp1
  wait_for "$WAIT_SECS" "bird has 10.244.13.0/26" bird_has_exact "$sock" 10.244.13.0/26 ibgp1
  wait_for "$WAIT_SECS" "bird has fd00:244:13::/122" bird_has_exact "$sock" fd00:244:13::/122 ibgp1
  sleep 3

  log "--- FRR withdraws 10.244.13.0/26 and fd00:244:13::/122"
  vty -c 'configure terminal' -c 'router bgp 64512' -c 'address-family ipv4 unicast' \
      -c 'no network 10.244.13.0/26'
  wait_for "$WAIT_SECS" "bird lost 10.244.13.0/26" bird_lacks_exact "$sock" 10.244.13.0/26 ibgp1
  vty -c 'configure terminal' -c 'router bgp 64512' -c 'address-family ipv6 unicast' \
      -c 'no network fd00:244:13::/122'
  wait_for "$WAIT_SECS" "bird lost fd00:244:13::/122" bird_lacks_exact "$sock" fd00:244:13::/122 ibgp1
  sleep 1

  log "--- BIRD administrative shutdown with shutdown communication"
  birdc_ "$sock" disable ibgp1 '"merle-fixture-ibgp"'
  wait_for "$WAIT_SECS" "frr sees fd00:255::2 down" frr_not_established fd00:255::2
  birdc_ "$sock" show protocols all ibgp1 >"$WORK/bird-ibgp-final.txt" || true
  stop_tcpdump
  stop_daemons
}

mkdir -p "$PCAP_DIR"
log "versions: $(bird --version 2>&1) / $("$FRR_BGPD" --version | head -n1)"
setup_netns
phase_ebgp
phase_ibgp
log "pcaps written to $PCAP_DIR"
python3 "$SCRIPT_DIR/extract-bgp-fixtures.py" --out "$FIXTURE_DIR" \
  "ebgp=$PCAP_DIR/ebgp.pcap" "ibgp=$PCAP_DIR/ibgp.pcap"
log "done"
