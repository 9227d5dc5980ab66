/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Services from outside the cluster, on the uplink: NodePorts on this
 * node's addresses, external and load-balancer IPs (and ClusterIPs, which
 * the ToR learns over BGP). The backend conntrack or Maglev picks is
 *
 *   on this node            DNAT, bpf_redirect_peer into it; its replies
 *                           are translated back as they leave it
 *   elsewhere, DSR          DNAT keeping the client's address, the
 *                           service in an option (lib/dsr.h) on a TCP
 *                           SYN, on the first packet this node sees of a
 *                           flow (one that moved here mid-way), and on
 *                           every UDP datagram; then the FIB redirect.
 *                           Too big with the option: ICMP back (icmp.h)
 *   elsewhere, SNAT         DNAT and SNAT to this node's address; the
 *                           replies come back here and are reversed
 *
 * The FIB redirect may leave by the interface the packet came in on:
 * that is the normal case for a load balancer on a stick. */
#ifndef MERLE_NODEPORT_H
#define MERLE_NODEPORT_H

#include "common.h"
#include "deliver.h"
#include "dsr.h"
#include "endpoint.h"
#include "fib.h"
#include "hash.h"
#include "icmp.h"
#include "lb.h"

/* SNAT source ports: in 32768-65535, the client's own when it is in that
 * range and free, else hashed ones. Free means that no live flow of
 * another client holds it and that no socket of the node's has the tuple
 * (a kubelet probe of the same backend from that port). A socket the node opens after the port
 * was taken is not seen (see docs/architecture.md, known limits). */
#define SNAT_PORT_MIN 32768
#define SNAT_PORT_SPAN 32768
#define SNAT_TRIES 4

/* Whether `port` (network order) is one snat_port hands out: a packet to
 * any other port (a NodePort, a service port) is no SNAT reply, and skips
 * the conntrack lookup, a cache miss on a table this size. */
static __always_inline int snat_port_range(__u16 port)
{
	return bpf_ntohs(port) >= SNAT_PORT_MIN;
}

#ifndef BPF_MTU_CHK_RET_FRAG_NEEDED
#define BPF_MTU_CHK_RET_FRAG_NEEDED 1
#endif

/* Whether a socket of this node's network namespace has the tuple the
 * reply key `r` names: the backend's packets to the node's address and
 * port would be its own. A subprogram, so that its tuple takes no room
 * on the callers' stacks. */
static __noinline int snat_host_holds(struct __sk_buff *skb, const struct ct_key *r)
{
	struct bpf_sock_tuple t;
	struct bpf_sock *sk;

	__builtin_memset(&t, 0, sizeof(t));
	if (r->family == AF_INET) {
		t.ipv4.saddr = r->saddr[0];
		t.ipv4.daddr = r->daddr[0];
		t.ipv4.sport = r->sport;
		t.ipv4.dport = r->dport;
		if (r->proto == IPPROTO_TCP)
			sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
		else
			sk = bpf_sk_lookup_udp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	} else {
		__builtin_memcpy(t.ipv6.saddr, r->saddr, sizeof(t.ipv6.saddr));
		__builtin_memcpy(t.ipv6.daddr, r->daddr, sizeof(t.ipv6.daddr));
		t.ipv6.sport = r->sport;
		t.ipv6.dport = r->dport;
		if (r->proto == IPPROTO_TCP)
			sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv6), BPF_F_CURRENT_NETNS, 0);
		else
			sk = bpf_sk_lookup_udp(skb, &t, sizeof(t.ipv6), BPF_F_CURRENT_NETNS, 0);
	}
	if (!sk)
		return 0;
	bpf_sk_release(sk);
	return 1;
}

/* Whether `port` is free for the SNAT of the flow `fwd` (of frontend
 * `rev_nat`) to (naddr) towards the backend (baddr, bport): no live flow
 * holds it but this one (an expired entry's is free again), and, with
 * `host`, no socket of the node's. */
static __always_inline int snat_port_free(struct __sk_buff *skb, const struct ct_key *fwd, const __u32 *baddr,
					  __u16 bport, const __u32 *naddr, __u16 port, __u32 rev_nat, __u32 now, int host)
{
	const struct ct_entry *e;
	struct ct_key r;

	lb_reply_key(&r, fwd, baddr, bport, naddr, port);
	e = bpf_map_lookup_elem(&merle_ct, &r);
	if (e && !ct_expired(e, fwd->proto, now))
		/* This flow's own. */
		return e->port == fwd->sport && e->rev_nat == rev_nat && e->addr[0] == fwd->saddr[0] &&
		       e->addr[1] == fwd->saddr[1] && e->addr[2] == fwd->saddr[2] && e->addr[3] == fwd->saddr[3];
	return !host || !snat_host_holds(skb, &r);
}

/* A source port for that SNAT: the client's own if it is in the range, or
 * one of a few hashed ones, whichever is free. 0: none is. */
static __always_inline __u16 snat_port(struct __sk_buff *skb, const struct ct_key *fwd, const __u32 *baddr,
				       __u16 bport, const __u32 *naddr, __u32 hash, __u32 rev_nat)
{
	__u32 now = ct_now();
	__u16 port = fwd->sport;

	if (snat_port_range(port) && snat_port_free(skb, fwd, baddr, bport, naddr, port, rev_nat, now, 1))
		return port;
#pragma unroll
	for (int i = 1; i < SNAT_TRIES; i++) {
		port = bpf_htons(SNAT_PORT_MIN + (hash + i * 7919) % SNAT_PORT_SPAN);
		if (snat_port_free(skb, fwd, baddr, bport, naddr, port, rev_nat, now, 1))
			return port;
	}
	return 0;
}

/* Records the SNAT reply entry (backend -> node address and port) that
 * turns replies back to the client, from the frontend. */
static __always_inline void snat_record(const struct ct_key *fwd, const __u32 *baddr, __u16 bport, const __u32 *naddr,
					__u16 nport, __u32 rev_nat, __u32 closing)
{
	struct ct_entry e = { .flags = CT_F_SNAT | closing, .rev_nat = rev_nat, .port = fwd->sport, .seen = ct_now() };
	struct ct_key r;

	__builtin_memcpy(e.addr, fwd->saddr, sizeof(e.addr));
	lb_reply_key(&r, fwd, baddr, bport, naddr, nport);
	ct_put(&r, &e);
}

/* The FIB's answer for `daddr`, from the packet's interface. */
static __always_inline long lb4_route(struct __sk_buff *skb, struct bpf_fib_lookup *p, __u32 saddr, __u32 daddr, __u8 proto)
{
	__builtin_memset(p, 0, sizeof(*p));
	p->family = AF_INET;
	p->l4_protocol = proto;
	p->ipv4_src = saddr;
	p->ipv4_dst = daddr;
	p->ifindex = skb->ifindex;
	return bpf_fib_lookup(skb, p, sizeof(*p), 0);
}

static __always_inline long lb6_route(struct __sk_buff *skb, struct bpf_fib_lookup *p, const __u32 *saddr,
				      const __u32 *daddr, __u8 proto)
{
	__builtin_memset(p, 0, sizeof(*p));
	p->family = AF_INET6;
	p->l4_protocol = proto;
	__builtin_memcpy(p->ipv6_src, saddr, 16);
	__builtin_memcpy(p->ipv6_dst, daddr, 16);
	p->ifindex = skb->ifindex;
	return bpf_fib_lookup(skb, p, sizeof(*p), 0);
}

/* Whether the IPv4 packet says Don't Fragment. */
static __always_inline int ip_df(const struct __sk_buff *skb)
{
	const struct iphdr *ip = ipv4_header((struct __sk_buff *)skb);

	return ip && (ip->frag_off & bpf_htons(0x4000));
}

static __always_inline int routable(long rc)
{
	return rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH;
}

/* Sends the translated packet by the FIB's answer, TTL decremented. */
static __always_inline int lb4_send(struct __sk_buff *skb, struct bpf_fib_lookup *p, long rc)
{
	struct iphdr *ip = ipv4_header(skb);

	if (!ip)
		return -DROP_INVALID_IPV4;
	ipv4_dec_ttl(ip);
	return fib_result(skb, p, rc);
}

static __always_inline int lb6_send(struct __sk_buff *skb, struct bpf_fib_lookup *p, long rc)
{
	struct ipv6hdr *ip6 = ipv6_header(skb);

	if (!ip6)
		return -DROP_INVALID_IPV6;
	ipv6_dec_hop_limit(ip6);
	return fib_result(skb, p, rc);
}

/* A reply to a SNAT'd flow, back at the node that translated it: from
 * the frontend, to the client. LB_NONE when it is not one. */
static __noinline int lb4_snat_reply(struct __sk_buff *skb)
{
	const struct iphdr *ip = ipv4_header(skb);
	struct ct_key k = { .family = AF_INET, .dir = CT_REPLY };
	const struct rev_nat_info *rn;
	struct ct_entry *ct;
	struct bpf_fib_lookup p;
	struct l4_ports ports;
	const struct l4_ports *pt = &ports;
	__u32 saddr, daddr, client, vip, now = ct_now();
	__u16 cport, vport;
	long rc;
	int r;

	if (!ip || ip->ihl != 5 || !l4_is_tcp_udp(ip->protocol) || l4_ports(skb, L4_OFF_V4, &ports) < 0 ||
	    !snat_port_range(ports.dport))
		return LB_NONE;
	k.proto = ip->protocol;
	saddr = ip->saddr;
	daddr = ip->daddr;

	k.saddr[0] = saddr;
	k.daddr[0] = daddr;
	k.sport = pt->sport;
	k.dport = pt->dport;
	ct = bpf_map_lookup_elem(&merle_ct, &k);
	if (!ct || !(ct->flags & CT_F_SNAT) || ct_expired(ct, k.proto, now))
		return LB_NONE;
	rn = bpf_map_lookup_elem(&merle_rev_nat, &ct->rev_nat);
	if (!rn || rn->family != AF_INET)
		return LB_NONE;
	ct_touch(ct, tcp_flags(skb, L4_OFF_V4, k.proto), now);
	client = ct->addr[0];
	cport = ct->port;
	vip = rn->addr[0];
	vport = rn->port;
	r = ipv4_check(skb, ip);
	if (r != 0)
		return r;
	rc = lb4_route(skb, &p, vip, client, k.proto);
	if (!routable(rc))
		return PASS_FIB;
	r = nat_v4(skb, k.proto, offsetof(struct iphdr, saddr), saddr, vip, L4_SPORT, pt->sport, vport);
	if (r < 0)
		return r;
	r = nat_v4(skb, k.proto, offsetof(struct iphdr, daddr), daddr, client, L4_DPORT, pt->dport, cport);
	if (r < 0)
		return r;
	return lb4_send(skb, &p, rc);
}

/* A packet from outside to a frontend. LB_NONE when it is not one. A
 * subprogram (as lb6_nodeport), so that the ingress program's own stack
 * and this one's add up within the limit rather than overlap badly. */
static __noinline int lb4_nodeport(struct __sk_buff *skb, __u32 *too_big)
{
	const struct iphdr *ip = ipv4_header(skb);
	struct ct_key fwd = { .family = AF_INET, .dir = CT_SERVICE };
	const struct service_info *svc;
	const struct backend_info *b;
	const struct endpoint_info *ep;
	const struct lb_config *cfg;
	struct bpf_fib_lookup p;
	struct ct_entry e;
	struct l4_ports pt;
	__u32 flow = 0, hash, saddr, daddr, baddr, naddr[4] = {}, mtu = 0;
	__u16 bport, nport;
	__u8 tcp;
	long rc;
	int r, opt, dsr;

	if (!ip)
		return LB_NONE;
	fwd.proto = ip->protocol;
	saddr = ip->saddr;
	daddr = ip->daddr;

	if (!l4_is_tcp_udp(fwd.proto) || l4_ports(skb, L4_OFF_V4, &pt) < 0)
		return LB_NONE;
	if (ip->ihl != 5)
		return LB_NONE;
	fwd.daddr[0] = daddr;
	svc = lb_frontend(AF_INET, fwd.daddr, pt.dport, fwd.proto);
	if (!svc)
		return LB_NONE;
	r = ipv4_check(skb, ip);
	if (r != 0)
		return r;
	if (!svc->count)
		return -DROP_NO_BACKEND;
	fwd.saddr[0] = saddr;
	fwd.sport = pt.sport;
	fwd.dport = pt.dport;
	hash = flow_hash_v4(saddr, daddr, pt.sport, pt.dport, fwd.proto);
	tcp = tcp_flags(skb, L4_OFF_V4, fwd.proto);
	b = lb_backend(&fwd, svc, hash, tcp, &flow, &e);
	if (!b)
		return -DROP_NO_BACKEND;
	baddr = b->addr[0];
	bport = b->port;

	ep = endpoint_v4(baddr);
	if (ep) {
		if (flow)
			lb_reply_record(&fwd, b->addr, bport, svc->rev_nat, e.flags & CT_F_CLOSING);
		r = nat_v4(skb, fwd.proto, offsetof(struct iphdr, daddr), daddr, baddr, L4_DPORT, pt.dport, bport);
		if (r < 0)
			return r;
		ip = ipv4_header(skb);
		if (!ip)
			return -DROP_INVALID_IPV4;
		return deliver_v4(skb, (struct iphdr *)ip, ep, 0);
	}

	dsr = svc->flags & SVC_F_DSR;
	if (dsr) {
		rc = lb4_route(skb, &p, saddr, baddr, fwd.proto);
		if (!routable(rc))
			return PASS_FIB;
		opt = flow == LB_FLOW_NEW || fwd.proto == IPPROTO_UDP || tcp_is_syn(tcp);
		if (opt && bpf_check_mtu(skb, p.ifindex, &mtu, DSR_IPV4_OPT_LEN, 0) == BPF_MTU_CHK_RET_FRAG_NEEDED) {
			/* The sender said not to fragment: tell it the size. Else
			 * the packet goes by SNAT, which adds nothing. */
			if (ip_df(skb))
			{
				*too_big = mtu - DSR_IPV4_OPT_LEN;
				return LB_TOO_BIG;
			}
			dsr = 0;
		}
	}
	if (dsr) {
		r = nat_v4(skb, fwd.proto, offsetof(struct iphdr, daddr), daddr, baddr, L4_DPORT, pt.dport, bport);
		if (r < 0)
			return r;
		if (opt) {
			r = dsr4_insert(skb, daddr, pt.dport);
			if (r < 0)
				return r;
		}
		return lb4_send(skb, &p, rc);
	}

	cfg = lb_config();
	if (!cfg || !(cfg->flags & LB_F_ADDR4))
		return -DROP_NAT;
	naddr[0] = cfg->addr4;
	/* The flow keeps its port while its reply entry is its own; a new
	 * flow, a node address that changed, or a port another flow took
	 * while this one was idle, takes another. */
	nport = e.port;
	if (flow == LB_FLOW_NEW || !nport || e.addr[0] != naddr[0] ||
	    (flow == LB_FLOW_RENEW && !snat_port_free(skb, &fwd, b->addr, bport, naddr, nport, svc->rev_nat, ct_now(), 0))) {
		nport = snat_port(skb, &fwd, b->addr, bport, naddr, hash, svc->rev_nat);
		if (!nport)
			return -DROP_NAT_NO_PORT;
		e.port = nport;
		e.addr[0] = naddr[0];
		ct_put(&fwd, &e);
		flow = LB_FLOW_NEW;
	}
	if (flow)
		snat_record(&fwd, b->addr, bport, naddr, nport, svc->rev_nat, e.flags & CT_F_CLOSING);
	rc = lb4_route(skb, &p, naddr[0], baddr, fwd.proto);
	if (!routable(rc))
		return PASS_FIB;
	r = nat_v4(skb, fwd.proto, offsetof(struct iphdr, daddr), daddr, baddr, L4_DPORT, pt.dport, bport);
	if (r < 0)
		return r;
	r = nat_v4(skb, fwd.proto, offsetof(struct iphdr, saddr), saddr, naddr[0], L4_SPORT, pt.sport, nport);
	if (r < 0)
		return r;
	return lb4_send(skb, &p, rc);
}

static __noinline int lb6_snat_reply(struct __sk_buff *skb)
{
	const struct ipv6hdr *ip6 = ipv6_header(skb);
	struct ct_key k = { .family = AF_INET6, .dir = CT_REPLY };
	const struct rev_nat_info *rn;
	struct ct_entry *ct;
	struct bpf_fib_lookup p;
	struct l4_ports ports;
	const struct l4_ports *pt = &ports;
	__u32 client[4], vip[4], now = ct_now();
	__u16 cport, vport;
	long rc;
	int r;

	if (!ip6 || !l4_is_tcp_udp(ip6->nexthdr) || l4_ports(skb, L4_OFF_V6, &ports) < 0 ||
	    !snat_port_range(ports.dport))
		return LB_NONE;
	k.proto = ip6->nexthdr;

	__builtin_memcpy(k.saddr, &ip6->saddr, sizeof(k.saddr));
	__builtin_memcpy(k.daddr, &ip6->daddr, sizeof(k.daddr));
	k.sport = pt->sport;
	k.dport = pt->dport;
	ct = bpf_map_lookup_elem(&merle_ct, &k);
	if (!ct || !(ct->flags & CT_F_SNAT) || ct_expired(ct, k.proto, now))
		return LB_NONE;
	rn = bpf_map_lookup_elem(&merle_rev_nat, &ct->rev_nat);
	if (!rn || rn->family != AF_INET6)
		return LB_NONE;
	ct_touch(ct, tcp_flags(skb, L4_OFF_V6, k.proto), now);
	__builtin_memcpy(client, ct->addr, sizeof(client));
	cport = ct->port;
	__builtin_memcpy(vip, rn->addr, sizeof(vip));
	vport = rn->port;
	r = ipv6_check(skb, ip6);
	if (r != 0)
		return r;
	rc = lb6_route(skb, &p, vip, client, k.proto);
	if (!routable(rc))
		return PASS_FIB;
	r = nat_v6(skb, k.proto, offsetof(struct ipv6hdr, saddr), k.saddr, vip, L4_SPORT, pt->sport, vport);
	if (r < 0)
		return r;
	r = nat_v6(skb, k.proto, offsetof(struct ipv6hdr, daddr), k.daddr, client, L4_DPORT, pt->dport, cport);
	if (r < 0)
		return r;
	return lb6_send(skb, &p, rc);
}

static __noinline int lb6_nodeport(struct __sk_buff *skb, __u32 *too_big)
{
	const struct ipv6hdr *ip6 = ipv6_header(skb);
	struct ct_key fwd = { .family = AF_INET6, .dir = CT_SERVICE };
	const struct service_info *svc;
	const struct backend_info *b;
	const struct endpoint_info *ep;
	const struct lb_config *cfg;
	struct bpf_fib_lookup p;
	struct ct_entry e;
	struct l4_ports pt;
	__u32 flow = 0, hash, baddr[4], naddr[4], mtu = 0;
	__u16 bport, nport;
	__u8 tcp;
	long rc;
	int r, opt;

	if (!ip6)
		return LB_NONE;
	fwd.proto = ip6->nexthdr;
	if (!l4_is_tcp_udp(fwd.proto) || l4_ports(skb, L4_OFF_V6, &pt) < 0)
		return LB_NONE;
	__builtin_memcpy(fwd.daddr, &ip6->daddr, sizeof(fwd.daddr));
	svc = lb_frontend(AF_INET6, fwd.daddr, pt.dport, fwd.proto);
	if (!svc)
		return LB_NONE;
	r = ipv6_check(skb, ip6);
	if (r != 0)
		return r;
	if (!svc->count)
		return -DROP_NO_BACKEND;
	__builtin_memcpy(fwd.saddr, &ip6->saddr, sizeof(fwd.saddr));
	fwd.sport = pt.sport;
	fwd.dport = pt.dport;
	hash = flow_hash_v6(fwd.saddr, fwd.daddr, pt.sport, pt.dport, fwd.proto);
	tcp = tcp_flags(skb, L4_OFF_V6, fwd.proto);
	b = lb_backend(&fwd, svc, hash, tcp, &flow, &e);
	if (!b)
		return -DROP_NO_BACKEND;
	__builtin_memcpy(baddr, b->addr, sizeof(baddr));
	bport = b->port;

	ep = endpoint_v6((const struct in6_addr *)baddr);
	if (ep) {
		if (flow)
			lb_reply_record(&fwd, baddr, bport, svc->rev_nat, e.flags & CT_F_CLOSING);
		r = nat_v6(skb, fwd.proto, offsetof(struct ipv6hdr, daddr), fwd.daddr, baddr, L4_DPORT, pt.dport, bport);
		if (r < 0)
			return r;
		ip6 = ipv6_header(skb);
		if (!ip6)
			return -DROP_INVALID_IPV6;
		return deliver_v6(skb, (struct ipv6hdr *)ip6, ep, 0);
	}

	if (svc->flags & SVC_F_DSR) {
		rc = lb6_route(skb, &p, fwd.saddr, baddr, fwd.proto);
		if (!routable(rc))
			return PASS_FIB;
		opt = flow == LB_FLOW_NEW || fwd.proto == IPPROTO_UDP || tcp_is_syn(tcp);
		/* IPv6 is never fragmented on the way: Packet Too Big, with an
		 * MTU no smaller than the 1280 every link carries. */
		if (opt && bpf_check_mtu(skb, p.ifindex, &mtu, DSR_IPV6_EXT_LEN, 0) == BPF_MTU_CHK_RET_FRAG_NEEDED)
		{
			*too_big = mtu - DSR_IPV6_EXT_LEN < 1280 ? 1280 : mtu - DSR_IPV6_EXT_LEN;
			return LB_TOO_BIG;
		}
		r = nat_v6(skb, fwd.proto, offsetof(struct ipv6hdr, daddr), fwd.daddr, baddr, L4_DPORT, pt.dport, bport);
		if (r < 0)
			return r;
		if (opt) {
			r = dsr6_insert(skb, fwd.daddr, pt.dport);
			if (r < 0)
				return r;
		}
		return lb6_send(skb, &p, rc);
	}

	cfg = lb_config();
	if (!cfg || !(cfg->flags & LB_F_ADDR6))
		return -DROP_NAT;
	__builtin_memcpy(naddr, cfg->addr6, sizeof(naddr));
	nport = e.port;
	if (flow == LB_FLOW_NEW || !nport || e.addr[0] != naddr[0] || e.addr[1] != naddr[1] || e.addr[2] != naddr[2] ||
	    e.addr[3] != naddr[3] ||
	    (flow == LB_FLOW_RENEW && !snat_port_free(skb, &fwd, baddr, bport, naddr, nport, svc->rev_nat, ct_now(), 0))) {
		nport = snat_port(skb, &fwd, baddr, bport, naddr, hash, svc->rev_nat);
		if (!nport)
			return -DROP_NAT_NO_PORT;
		e.port = nport;
		__builtin_memcpy(e.addr, naddr, sizeof(e.addr));
		ct_put(&fwd, &e);
		flow = LB_FLOW_NEW;
	}
	if (flow)
		snat_record(&fwd, baddr, bport, naddr, nport, svc->rev_nat, e.flags & CT_F_CLOSING);
	rc = lb6_route(skb, &p, naddr, baddr, fwd.proto);
	if (!routable(rc))
		return PASS_FIB;
	r = nat_v6(skb, fwd.proto, offsetof(struct ipv6hdr, daddr), fwd.daddr, baddr, L4_DPORT, pt.dport, bport);
	if (r < 0)
		return r;
	r = nat_v6(skb, fwd.proto, offsetof(struct ipv6hdr, saddr), fwd.saddr, naddr, L4_SPORT, pt.sport, nport);
	if (r < 0)
		return r;
	return lb6_send(skb, &p, rc);
}

#endif
