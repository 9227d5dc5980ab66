/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Services: the frontend lookup, the backend a flow goes to, and the
 * translations both ways, in the shape of Cilium's lb4/lb6.
 *
 *   merle_services   (VIP, port, proto) -> table, rev-NAT index, flags
 *   merle_maglev     (table, chunk) -> backend ids of its Maglev slots
 *   merle_backends   backend id -> (address, port)
 *   merle_rev_nat    rev-NAT index -> (VIP, port) replies come from
 *   merle_ct         LRU conntrack: flow -> backend, reply -> rev-NAT
 *
 * A flow's first packet takes slot flow_hash % m of its table (m prime),
 * which every node built alike, and the choice is kept in merle_ct: a
 * backend added later takes new flows only; one removed (its id gone)
 * sends its own flows through the table again, and no other flow moves.
 * merled writes all of these (ebpf/src/services.rs). */
#ifndef MERLE_LB_H
#define MERLE_LB_H

#include "common.h"
#include "drop.h"
#include "hash.h"
#include "ipv4.h"
#include "ipv6.h"
#include "l4.h"
#include "types.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SERVICES_MAX);
	__type(key, struct service_key);
	__type(value, struct service_info);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} merle_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAGLEV_CHUNKS_MAX);
	__type(key, struct maglev_key);
	__type(value, struct maglev_chunk);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} merle_maglev SEC(".maps");

/* The backend id at `hash`'s slot of `svc`'s table, 0 when there is
 * none. */
static __always_inline __u32 maglev_pick(const struct service_info *svc, __u32 hash)
{
	struct maglev_key k = { .lb_id = svc->lb_id };
	const struct maglev_chunk *c;
	__u32 m = svc->maglev_m, slot, i;

	if (m == 0 || m > MAGLEV_M_MAX)
		return 0;
	slot = hash % m;
	k.chunk = slot / MAGLEV_CHUNK;
	c = bpf_map_lookup_elem(&merle_maglev, &k);
	if (!c)
		return 0;
	i = slot & (MAGLEV_CHUNK - 1);
	return c->backend[i];
}

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BACKENDS_MAX);
	__type(key, __u32);
	__type(value, struct backend_info);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} merle_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SERVICES_MAX);
	__type(key, __u32);
	__type(value, struct rev_nat_info);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} merle_rev_nat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CT_MAX);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} merle_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} merle_lb_config SEC(".maps");

/* Whether any service is programmed: one inlined load, so that a cluster
 * without services pays nothing else. */
static __always_inline int lb_active(void)
{
	__u32 zero = 0;
	const struct lb_config *c = bpf_map_lookup_elem(&merle_lb_config, &zero);

	return c && c->services;
}

static __always_inline __u32 ct_now(void)
{
	return (__u32)(bpf_ktime_get_ns() >> CT_TICK_SHIFT);
}

/* Whether an entry has outlived its flow: no packet for its lifetime. */
static __always_inline int ct_expired(const struct ct_entry *e, __u8 proto, __u32 now)
{
	__u32 life = proto != IPPROTO_TCP ? CT_LIFE_UDP : (e->flags & CT_F_CLOSING) ? CT_LIFE_CLOSING : CT_LIFE_TCP;

	return now - e->seen > life;
}

/* A packet went by, with TCP flags `tcp`: the entry lives on, and a FIN
 * or RST starts its end. */
static __always_inline void ct_touch(struct ct_entry *e, __u8 tcp, __u32 now)
{
	if (tcp_is_end(tcp) && !(e->flags & CT_F_CLOSING))
		e->flags |= CT_F_CLOSING;
	if (e->seen != now)
		e->seen = now;
}

/* Writes the conntrack entry `e` for `k` over `held`, the one the table
 * has for it (NULL: none). In place when there is one: an update would
 * take a free entry of the LRU (evicting one when the table is full) and
 * free the old one, twice the work on the packet's path, for a tuple that
 * a client reuses or a flow that renews its entries. A reader on another
 * CPU may see the entry half written; only packets of this same tuple
 * read it, and a new flow's first packets do not race one another. */
static __always_inline void ct_write(const struct ct_key *k, struct ct_entry *held, const struct ct_entry *e)
{
	if (held) {
		__builtin_memcpy(held, e, sizeof(*e));
		return;
	}
	bpf_map_update_elem(&merle_ct, k, e, BPF_ANY);
}

/* Writes `e` for `k`, whether or not the table has an entry for it. */
static __always_inline void ct_put(const struct ct_key *k, const struct ct_entry *e)
{
	ct_write(k, bpf_map_lookup_elem(&merle_ct, k), e);
}

/* What lb_backend found for a flow. */
#define LB_FLOW_KEPT  0 /* on the backend conntrack kept */
#define LB_FLOW_NEW   1 /* a new choice: its reply entries are written */
#define LB_FLOW_RENEW 2 /* kept, and its reply entries written again: the
			 * first packet of a tick or a SYN, so that they live
			 * while either direction does, and come back if the
			 * LRU took them */

/* The backend for the flow `fwd` (CT_SERVICE, as the client sent it) of
 * `svc`, whose packet has TCP flags `tcp`: the one conntrack kept it on
 * while that backend is still in the service's table and the entry lives,
 * else the table's slot for `hash`, recorded. *flow says which
 * (LB_FLOW_*); *entry holds the flow's entry. NULL: the table has no such
 * backend. */
static __always_inline const struct backend_info *lb_backend(const struct ct_key *fwd, const struct service_info *svc,
							     __u32 hash, __u8 tcp, __u32 *flow, struct ct_entry *entry)
{
	struct ct_entry *ct = bpf_map_lookup_elem(&merle_ct, fwd);
	const struct backend_info *b;
	__u32 id, now = ct_now();

	/* An entry of another table, or of a frontend since re-created (its
	 * rev-NAT index differs: the reply entries the flow made name the
	 * old one), is chosen again; so is an expired one, and one a new
	 * connection reuses after the last one closed. */
	if (ct && ct->lb_id == svc->lb_id && ct->rev_nat == svc->rev_nat && !ct_expired(ct, fwd->proto, now) &&
	    !(tcp_is_syn(tcp) && (ct->flags & CT_F_CLOSING))) {
		id = ct->backend_id;
		b = bpf_map_lookup_elem(&merle_backends, &id);
		if (b && b->lb_id == svc->lb_id) {
			*flow = ct->seen != now || tcp_is_syn(tcp) ? LB_FLOW_RENEW : LB_FLOW_KEPT;
			ct_touch(ct, tcp, now);
			*entry = *ct;
			return b;
		}
	}
	id = maglev_pick(svc, hash);
	b = bpf_map_lookup_elem(&merle_backends, &id);
	if (!b || b->lb_id != svc->lb_id)
		return NULL;
	__builtin_memset(entry, 0, sizeof(*entry));
	entry->backend_id = id;
	entry->lb_id = svc->lb_id;
	entry->rev_nat = svc->rev_nat;
	entry->seen = now;
	if (tcp_is_end(tcp))
		entry->flags = CT_F_CLOSING;
	ct_write(fwd, ct, entry);
	*flow = LB_FLOW_NEW;
	return b;
}

/* The CT_REPLY key of the replies of flow `fwd` from (baddr, bport) to
 * (daddr, dport): the client's address and port for DNAT alone, the
 * node's after SNAT. */
static __always_inline void lb_reply_key(struct ct_key *r, const struct ct_key *fwd, const __u32 *baddr, __u16 bport,
					 const __u32 *daddr, __u16 dport)
{
	__builtin_memset(r, 0, sizeof(*r));
	r->proto = fwd->proto;
	r->family = fwd->family;
	r->dir = CT_REPLY;
	__builtin_memcpy(r->saddr, baddr, sizeof(r->saddr));
	__builtin_memcpy(r->daddr, daddr, sizeof(r->daddr));
	r->sport = bport;
	r->dport = dport;
}

/* Records that replies of the flow from (baddr, bport) to the client go
 * out as from the frontend `rev_nat`; `closing` (CT_F_CLOSING or 0) as the
 * flow's own entry says. */
static __always_inline void lb_reply_record(const struct ct_key *fwd, const __u32 *baddr, __u16 bport, __u32 rev_nat,
					    __u32 closing)
{
	struct ct_key r;
	struct ct_entry e = { .rev_nat = rev_nat, .flags = closing, .seen = ct_now() };

	lb_reply_key(&r, fwd, baddr, bport, fwd->saddr, fwd->sport);
	ct_put(&r, &e);
}

/* The hairpin source of `family`: HAIRPIN_V4 or HAIRPIN_V6. */
static __always_inline void lb_hairpin_addr(__u8 family, __u32 *a)
{
	a[0] = family == AF_INET ? HAIRPIN_V4 : HAIRPIN_V6_W0;
	a[1] = 0;
	a[2] = 0;
	a[3] = family == AF_INET ? 0 : HAIRPIN_V6_W3;
}

/* Whether `a` is the hairpin source of `family`. */
static __always_inline int lb_is_hairpin(__u8 family, const __u32 *a)
{
	if (family == AF_INET)
		return a[0] == HAIRPIN_V4;
	return a[0] == HAIRPIN_V6_W0 && a[1] == 0 && a[2] == 0 && a[3] == HAIRPIN_V6_W3;
}

/* The reply entry of a pod's flow to a service it backs itself: replies
 * from it to the hairpin source go back to it, from the frontend. */
static __always_inline void lb_hairpin_record(const struct ct_key *fwd, __u16 bport, __u32 rev_nat, __u32 closing)
{
	struct ct_entry e = { .flags = CT_F_HAIRPIN | closing, .rev_nat = rev_nat, .port = fwd->sport, .seen = ct_now() };
	__u32 hairpin[4];
	struct ct_key r;

	lb_hairpin_addr(fwd->family, hairpin);
	__builtin_memcpy(e.addr, fwd->saddr, sizeof(e.addr));
	lb_reply_key(&r, fwd, fwd->saddr, bport, hairpin, fwd->sport);
	ct_put(&r, &e);
}

/* The frontend as traffic from pods uses it: externalTrafficPolicy Local
 * limits outside traffic to this node's backends, not the cluster's own
 * (kube-proxy's rule too). */
static __always_inline void lb_from_pods(struct service_info *eff, const struct service_info *svc)
{
	*eff = *svc;
	if (svc->flags & SVC_F_LOCAL) {
		eff->lb_id = svc->cluster_lb_id;
		eff->count = svc->cluster_count;
	}
}

/* The frontend for a packet to (daddr, dport, proto), or NULL. */
static __always_inline const struct service_info *lb_frontend(__u8 family, const __u32 *daddr, __u16 dport, __u8 proto)
{
	struct service_key k = { .port = dport, .proto = proto, .family = family };

	__builtin_memcpy(k.addr, daddr, sizeof(k.addr));
	return bpf_map_lookup_elem(&merle_services, &k);
}

/* The result of a frontend lookup and translation. */
#define LB_NONE 0  /* not for a service: carry on */
#define LB_DNAT 1  /* translated to a backend */
/* A DSR request the option pushes over the MTU: the caller sends ICMP
 * with the size it was given. Above every reason code, which the
 * functions that return it also return. */
#define LB_TOO_BIG (REASONS_MAX + 1)

/* A TCP or UDP packet to a frontend is translated to its backend:
 * destination address and port, checksums, conntrack. LB_NONE for any
 * other packet; -DROP_NO_BACKEND for a service without one. */
static __always_inline int lb4_dnat(struct __sk_buff *skb, const struct iphdr *ip)
{
	struct ct_key fwd = { .proto = ip->protocol, .family = AF_INET, .dir = CT_SERVICE };
	const struct service_info *svc, *found;
	struct service_info eff;
	const struct backend_info *b;
	struct ct_entry e;
	struct l4_ports p;
	__u32 flow = 0, daddr = ip->daddr, baddr, bport;
	int r;

	if (!l4_is_tcp_udp(fwd.proto) || l4_ports(skb, L4_OFF_V4, &p) < 0)
		return LB_NONE;
	fwd.daddr[0] = daddr;
	found = lb_frontend(AF_INET, fwd.daddr, p.dport, fwd.proto);
	if (!found)
		return LB_NONE;
	lb_from_pods(&eff, found);
	svc = &eff;
	if (!svc->count)
		return -DROP_NO_BACKEND;
	fwd.saddr[0] = ip->saddr;
	fwd.sport = p.sport;
	fwd.dport = p.dport;
	b = lb_backend(&fwd, svc, flow_hash_v4(ip->saddr, daddr, p.sport, p.dport, fwd.proto),
		       tcp_flags(skb, L4_OFF_V4, fwd.proto), &flow, &e);
	if (!b)
		return -DROP_NO_BACKEND;
	baddr = b->addr[0];
	bport = b->port;
	if (baddr == fwd.saddr[0]) {
		/* The pod backs the service it asked: from HAIRPIN_V4, so that
		 * it takes its own packet, and its reply comes back here. */
		if (flow)
			lb_hairpin_record(&fwd, bport, svc->rev_nat, e.flags & CT_F_CLOSING);
		r = nat_v4(skb, fwd.proto, offsetof(struct iphdr, daddr), daddr, baddr, L4_DPORT, p.dport, bport);
		if (r < 0)
			return r;
		r = nat_v4(skb, fwd.proto, offsetof(struct iphdr, saddr), fwd.saddr[0], HAIRPIN_V4, L4_SPORT, p.sport,
			   p.sport);
		return r < 0 ? r : LB_DNAT;
	}
	if (flow)
		lb_reply_record(&fwd, b->addr, bport, svc->rev_nat, e.flags & CT_F_CLOSING);
	r = nat_v4(skb, fwd.proto, offsetof(struct iphdr, daddr), daddr, baddr, L4_DPORT, p.dport, bport);
	return r < 0 ? r : LB_DNAT;
}

static __always_inline int lb6_dnat(struct __sk_buff *skb, const struct ipv6hdr *ip6)
{
	struct ct_key fwd = { .proto = ip6->nexthdr, .family = AF_INET6, .dir = CT_SERVICE };
	const struct service_info *svc, *found;
	struct service_info eff;
	const struct backend_info *b;
	struct ct_entry e;
	struct l4_ports p;
	__u32 flow = 0, baddr[4];
	__u16 bport;
	int r;

	if (!l4_is_tcp_udp(fwd.proto) || l4_ports(skb, L4_OFF_V6, &p) < 0)
		return LB_NONE;
	__builtin_memcpy(fwd.daddr, &ip6->daddr, sizeof(fwd.daddr));
	found = lb_frontend(AF_INET6, fwd.daddr, p.dport, fwd.proto);
	if (!found)
		return LB_NONE;
	lb_from_pods(&eff, found);
	svc = &eff;
	if (!svc->count)
		return -DROP_NO_BACKEND;
	__builtin_memcpy(fwd.saddr, &ip6->saddr, sizeof(fwd.saddr));
	fwd.sport = p.sport;
	fwd.dport = p.dport;
	b = lb_backend(&fwd, svc, flow_hash_v6(fwd.saddr, fwd.daddr, p.sport, p.dport, fwd.proto),
		       tcp_flags(skb, L4_OFF_V6, fwd.proto), &flow, &e);
	if (!b)
		return -DROP_NO_BACKEND;
	__builtin_memcpy(baddr, b->addr, sizeof(baddr));
	bport = b->port;
	if (baddr[0] == fwd.saddr[0] && baddr[1] == fwd.saddr[1] && baddr[2] == fwd.saddr[2] &&
	    baddr[3] == fwd.saddr[3]) {
		/* The pod backs the service it asked: from the hairpin source,
		 * as over IPv4. */
		__u32 hairpin[4];

		if (flow)
			lb_hairpin_record(&fwd, bport, svc->rev_nat, e.flags & CT_F_CLOSING);
		r = nat_v6(skb, fwd.proto, offsetof(struct ipv6hdr, daddr), fwd.daddr, baddr, L4_DPORT, p.dport, bport);
		if (r < 0)
			return r;
		lb_hairpin_addr(AF_INET6, hairpin);
		r = nat_v6(skb, fwd.proto, offsetof(struct ipv6hdr, saddr), fwd.saddr, hairpin, L4_SPORT, p.sport,
			   p.sport);
		return r < 0 ? r : LB_DNAT;
	}
	if (flow)
		lb_reply_record(&fwd, baddr, bport, svc->rev_nat, e.flags & CT_F_CLOSING);
	r = nat_v6(skb, fwd.proto, offsetof(struct ipv6hdr, daddr), fwd.daddr, baddr, L4_DPORT, p.dport, bport);
	return r < 0 ? r : LB_DNAT;
}

/* The address and port a reply's source becomes, from its CT_REPLY
 * entry: the VIP a DSR request carried, or the frontend by rev-NAT index.
 * NULL for a SNAT reply (the uplink reverses those) or no entry. */
static __always_inline int lb_rev_target(const struct ct_entry *ct, __u8 family, __u32 *addr, __u16 *port)
{
	const struct rev_nat_info *rn;

	if (ct->flags & CT_F_SNAT)
		return -1;
	if (ct->flags & CT_F_DSR) {
		__builtin_memcpy(addr, ct->addr, 16);
		*port = ct->port;
		return 0;
	}
	rn = bpf_map_lookup_elem(&merle_rev_nat, &ct->rev_nat);
	if (!rn || rn->family != family)
		return -1;
	__builtin_memcpy(addr, rn->addr, 16);
	*port = rn->port;
	return 0;
}

/* A reply of a translated flow, as it leaves its backend or arrives for
 * its client: its source becomes the address the client asked. 1 when it
 * was rewritten (packet pointers must be loaded again), 0 for any other
 * packet. The first of the two hooks that sees a reply translates it; the
 * other then finds no entry for it. */
static __noinline __attribute__((unused)) int lb4_rev_nat(struct __sk_buff *skb)
{
	struct iphdr *ip = ipv4_header(skb);
	struct ct_key k = { .family = AF_INET, .dir = CT_REPLY };
	struct ct_entry *ct;
	struct l4_ports p;
	__u32 saddr, to[4], hairpin, client, now = ct_now();
	__u16 port;
	int r;

	if (!ip || ip->ihl != 5 || !l4_is_tcp_udp(ip->protocol) || l4_ports(skb, L4_OFF_V4, &p) < 0)
		return 0;
	k.proto = ip->protocol;
	k.saddr[0] = saddr = ip->saddr;
	k.daddr[0] = ip->daddr;
	k.sport = p.sport;
	k.dport = p.dport;
	ct = bpf_map_lookup_elem(&merle_ct, &k);
	if (!ct || ct_expired(ct, k.proto, now) || lb_rev_target(ct, AF_INET, to, &port) < 0)
		return 0;
	ct_touch(ct, tcp_flags(skb, L4_OFF_V4, k.proto), now);
	hairpin = ct->flags & CT_F_HAIRPIN;
	client = ct->addr[0];
	r = nat_v4(skb, k.proto, offsetof(struct iphdr, saddr), saddr, to[0], L4_SPORT, p.sport, port);
	if (r < 0)
		return r;
	if (hairpin) {
		r = nat_v4(skb, k.proto, offsetof(struct iphdr, daddr), k.daddr[0], client, L4_DPORT, p.dport, p.dport);
		if (r < 0)
			return r;
	}
	return 1;
}

static __noinline __attribute__((unused)) int lb6_rev_nat(struct __sk_buff *skb)
{
	struct ipv6hdr *ip6 = ipv6_header(skb);
	struct ct_key k = { .family = AF_INET6, .dir = CT_REPLY };
	struct ct_entry *ct;
	struct l4_ports p;
	__u32 to[4], client[4], hairpin, now = ct_now();
	__u16 port;
	int r;

	if (!ip6 || !l4_is_tcp_udp(ip6->nexthdr) || l4_ports(skb, L4_OFF_V6, &p) < 0)
		return 0;
	k.proto = ip6->nexthdr;
	__builtin_memcpy(k.saddr, &ip6->saddr, sizeof(k.saddr));
	__builtin_memcpy(k.daddr, &ip6->daddr, sizeof(k.daddr));
	k.sport = p.sport;
	k.dport = p.dport;
	ct = bpf_map_lookup_elem(&merle_ct, &k);
	if (!ct || ct_expired(ct, k.proto, now) || lb_rev_target(ct, AF_INET6, to, &port) < 0)
		return 0;
	ct_touch(ct, tcp_flags(skb, L4_OFF_V6, k.proto), now);
	hairpin = ct->flags & CT_F_HAIRPIN;
	__builtin_memcpy(client, ct->addr, sizeof(client));
	r = nat_v6(skb, k.proto, offsetof(struct ipv6hdr, saddr), k.saddr, to, L4_SPORT, p.sport, port);
	if (r < 0)
		return r;
	if (hairpin) {
		r = nat_v6(skb, k.proto, offsetof(struct ipv6hdr, daddr), k.daddr, client, L4_DPORT, p.dport, p.dport);
		if (r < 0)
			return r;
	}
	return 1;
}

static __always_inline const struct lb_config *lb_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&merle_lb_config, &zero);
}

#endif
