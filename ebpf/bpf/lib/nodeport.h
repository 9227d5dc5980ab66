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

#include <linux/tcp.h>
#include "common.h"
#include "deliver.h"
#include "dsr.h"
#include "endpoint.h"
#include "fib.h"
#include "hash.h"
#include "icmp.h"
#include "lb.h"

#define SNAT_PORT_MIN 32768
#define SNAT_PORT_SPAN 28232 /* to 60999, the kernel's default ephemeral range */
#define SNAT_TRIES 4

#ifndef BPF_MTU_CHK_RET_FRAG_NEEDED
#define BPF_MTU_CHK_RET_FRAG_NEEDED 1
#endif

/* Whether the TCP segment at `off` is a SYN without ACK. */
static __always_inline int tcp_syn(const struct __sk_buff *skb, __u32 off)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct tcphdr *th = data + off;

	if ((void *)(th + 1) > end)
		return 0;
	return th->syn && !th->ack;
}

/* A source port for the SNAT of the flow `fwd` to (naddr) towards the
 * backend (baddr, bport): the client's own when no other flow holds it,
 * else one of a few hashed ones. 0: none free. */
static __always_inline __u16 snat_port(const struct ct_key *fwd, const __u32 *baddr, __u16 bport, const __u32 *naddr,
				       __u32 hash)
{
	const struct ct_entry *e;
	struct ct_key r;
	__u16 port;

#pragma unroll
	for (int i = 0; i < SNAT_TRIES; i++) {
		port = i == 0 ? fwd->sport : bpf_htons(SNAT_PORT_MIN + (hash + i * 7919) % SNAT_PORT_SPAN);
		lb_reply_key(&r, fwd, baddr, bport, naddr, port);
		e = bpf_map_lookup_elem(&merle_ct, &r);
		if (!e)
			return port;
		if (e->port == fwd->sport && e->addr[0] == fwd->saddr[0] && e->addr[1] == fwd->saddr[1] &&
		    e->addr[2] == fwd->saddr[2] && e->addr[3] == fwd->saddr[3])
			return port; /* this flow's own */
	}
	return 0;
}

/* Records the SNAT reply entry (backend -> node address and port) that
 * turns replies back to the client, from the frontend. */
static __always_inline void snat_record(const struct ct_key *fwd, const __u32 *baddr, __u16 bport, const __u32 *naddr,
					__u16 nport, __u32 rev_nat)
{
	struct ct_entry e = { .flags = CT_F_SNAT, .rev_nat = rev_nat, .port = fwd->sport };
	struct ct_key r;

	__builtin_memcpy(e.addr, fwd->saddr, sizeof(e.addr));
	lb_reply_key(&r, fwd, baddr, bport, naddr, nport);
	bpf_map_update_elem(&merle_ct, &r, &e, BPF_ANY);
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
static __always_inline int lb4_snat_reply(struct __sk_buff *skb, const struct iphdr *ip, const struct l4_ports *pt)
{
	struct ct_key k = { .proto = ip->protocol, .family = AF_INET, .dir = CT_REPLY };
	const struct rev_nat_info *rn;
	const struct ct_entry *ct;
	struct bpf_fib_lookup p;
	__u32 saddr = ip->saddr, daddr = ip->daddr, client, vip;
	__u16 cport, vport;
	long rc;
	int r;

	k.saddr[0] = saddr;
	k.daddr[0] = daddr;
	k.sport = pt->sport;
	k.dport = pt->dport;
	ct = bpf_map_lookup_elem(&merle_ct, &k);
	if (!ct || !(ct->flags & CT_F_SNAT))
		return LB_NONE;
	rn = bpf_map_lookup_elem(&merle_rev_nat, &ct->rev_nat);
	if (!rn || rn->family != AF_INET)
		return LB_NONE;
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

/* A packet from outside to a frontend. LB_NONE when it is not one. */
static __always_inline int lb4_nodeport(struct __sk_buff *skb, const struct iphdr *ip)
{
	struct ct_key fwd = { .proto = ip->protocol, .family = AF_INET, .dir = CT_SERVICE };
	const struct service_info *svc;
	const struct backend_info *b;
	const struct endpoint_info *ep;
	const struct lb_config *cfg;
	struct bpf_fib_lookup p;
	struct ct_entry e;
	struct l4_ports pt;
	__u32 fresh = 0, hash, saddr = ip->saddr, daddr = ip->daddr, baddr, naddr[4] = {}, mtu = 0;
	__u16 bport, nport;
	long rc;
	int r, opt;

	if (!l4_is_tcp_udp(fwd.proto) || l4_ports(skb, L4_OFF_V4, &pt) < 0)
		return LB_NONE;
	if (ip->ihl != 5)
		return LB_NONE;
	r = lb4_snat_reply(skb, ip, &pt);
	if (r != LB_NONE)
		return r;
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
	b = lb_backend(&fwd, svc, hash, &fresh, &e);
	if (!b)
		return -DROP_NO_BACKEND;
	baddr = b->addr[0];
	bport = b->port;

	ep = endpoint_v4(baddr);
	if (ep) {
		if (fresh)
			lb_reply_record(&fwd, b->addr, bport, svc->rev_nat);
		r = nat_v4(skb, fwd.proto, offsetof(struct iphdr, daddr), daddr, baddr, L4_DPORT, pt.dport, bport);
		if (r < 0)
			return r;
		ip = ipv4_header(skb);
		if (!ip)
			return -DROP_INVALID_IPV4;
		return deliver_v4(skb, (struct iphdr *)ip, ep, 0);
	}

	if (svc->flags & SVC_F_DSR) {
		rc = lb4_route(skb, &p, saddr, baddr, fwd.proto);
		if (!routable(rc))
			return PASS_FIB;
		opt = fresh || fwd.proto == IPPROTO_UDP || tcp_syn(skb, L4_OFF_V4);
		if (opt && bpf_check_mtu(skb, p.ifindex, &mtu, DSR_IPV4_OPT_LEN, 0) == BPF_MTU_CHK_RET_FRAG_NEEDED)
			return icmp4_too_big(skb, mtu - DSR_IPV4_OPT_LEN);
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
	nport = e.port;
	if (fresh || !nport) {
		nport = snat_port(&fwd, b->addr, bport, naddr, hash);
		if (!nport)
			return -DROP_NAT_NO_PORT;
		e.port = nport;
		e.addr[0] = naddr[0];
		bpf_map_update_elem(&merle_ct, &fwd, &e, BPF_ANY);
		snat_record(&fwd, b->addr, bport, naddr, nport, svc->rev_nat);
	}
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

static __always_inline int lb6_snat_reply(struct __sk_buff *skb, const struct ipv6hdr *ip6, const struct l4_ports *pt)
{
	struct ct_key k = { .proto = ip6->nexthdr, .family = AF_INET6, .dir = CT_REPLY };
	const struct rev_nat_info *rn;
	const struct ct_entry *ct;
	struct bpf_fib_lookup p;
	__u32 client[4], vip[4];
	__u16 cport, vport;
	long rc;
	int r;

	__builtin_memcpy(k.saddr, &ip6->saddr, sizeof(k.saddr));
	__builtin_memcpy(k.daddr, &ip6->daddr, sizeof(k.daddr));
	k.sport = pt->sport;
	k.dport = pt->dport;
	ct = bpf_map_lookup_elem(&merle_ct, &k);
	if (!ct || !(ct->flags & CT_F_SNAT))
		return LB_NONE;
	rn = bpf_map_lookup_elem(&merle_rev_nat, &ct->rev_nat);
	if (!rn || rn->family != AF_INET6)
		return LB_NONE;
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

static __always_inline int lb6_nodeport(struct __sk_buff *skb, const struct ipv6hdr *ip6)
{
	struct ct_key fwd = { .proto = ip6->nexthdr, .family = AF_INET6, .dir = CT_SERVICE };
	const struct service_info *svc;
	const struct backend_info *b;
	const struct endpoint_info *ep;
	const struct lb_config *cfg;
	struct bpf_fib_lookup p;
	struct ct_entry e;
	struct l4_ports pt;
	__u32 fresh = 0, hash, baddr[4], naddr[4], mtu = 0;
	__u16 bport, nport;
	long rc;
	int r, opt;

	if (!l4_is_tcp_udp(fwd.proto) || l4_ports(skb, L4_OFF_V6, &pt) < 0)
		return LB_NONE;
	r = lb6_snat_reply(skb, ip6, &pt);
	if (r != LB_NONE)
		return r;
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
	b = lb_backend(&fwd, svc, hash, &fresh, &e);
	if (!b)
		return -DROP_NO_BACKEND;
	__builtin_memcpy(baddr, b->addr, sizeof(baddr));
	bport = b->port;

	ep = endpoint_v6((const struct in6_addr *)baddr);
	if (ep) {
		if (fresh)
			lb_reply_record(&fwd, baddr, bport, svc->rev_nat);
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
		opt = fresh || fwd.proto == IPPROTO_UDP || tcp_syn(skb, L4_OFF_V6);
		if (opt && bpf_check_mtu(skb, p.ifindex, &mtu, DSR_IPV6_EXT_LEN, 0) == BPF_MTU_CHK_RET_FRAG_NEEDED)
			return icmp6_too_big(skb, mtu - DSR_IPV6_EXT_LEN);
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
	if (fresh || !nport) {
		nport = snat_port(&fwd, baddr, bport, naddr, hash);
		if (!nport)
			return -DROP_NAT_NO_PORT;
		e.port = nport;
		__builtin_memcpy(e.addr, naddr, sizeof(e.addr));
		bpf_map_update_elem(&merle_ct, &fwd, &e, BPF_ANY);
		snat_record(&fwd, baddr, bport, naddr, nport, svc->rev_nat);
	}
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
