/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Direct server return with the service in the packet, as Cilium's
 * default dispatch: the load-balancing node inserts an IPv4 option (type
 * 0x9a, 8 bytes: the service port and address) or an IPv6 destination
 * options header (option 0x1B, 24 bytes) after the DNAT; the backend's
 * node reads it, records the reply tuple -> (VIP, port) in merle_ct, and
 * the backend's replies leave with that source (lib/lb.h), straight to
 * the client. The option stays in the packet: the pod's stack skips an
 * option it does not know (IPv4: RFC 791 ignores unknown options on
 * receipt; IPv6: the option type's top bits are 00, "skip"). */
#ifndef MERLE_DSR_H
#define MERLE_DSR_H

#include "common.h"
#include "drop.h"
#include "ipv4.h"
#include "ipv6.h"
#include "l4.h"
#include "lb.h"
#include "types.h"

#ifndef NEXTHDR_DEST
#define NEXTHDR_DEST 60
#endif

/* Inserts the option after the IPv4 header (without options) of a
 * packet already translated to its backend; the header grows to 28
 * bytes, with its length and checksum fixed. The L4 checksum does not
 * change: its pseudo-header counts the L4 length only. */
static __always_inline int dsr4_insert(struct __sk_buff *skb, __u32 vip, __u16 vport)
{
	struct dsr_opt_v4 opt = { .type = DSR_IPV4_OPT_TYPE, .len = DSR_IPV4_OPT_LEN, .port = vport, .addr = vip };
	void *data, *end;
	struct iphdr *ip;

	if (bpf_skb_adjust_room(skb, sizeof(opt), BPF_ADJ_ROOM_NET, 0) < 0)
		return -DROP_DSR;
	if (bpf_skb_store_bytes(skb, ETH_HLEN + sizeof(struct iphdr), &opt, sizeof(opt), 0) < 0)
		return -DROP_DSR;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	ip = data + ETH_HLEN;
	if ((void *)ip + sizeof(*ip) + sizeof(opt) > end)
		return -DROP_DSR;
	ip->ihl = 7;
	ip->tot_len = bpf_htons(bpf_ntohs(ip->tot_len) + sizeof(opt));
	ip->check = ipv4_csum(ip, sizeof(*ip) + sizeof(opt));
	return 0;
}

/* Inserts the destination options header after the IPv6 header. */
static __always_inline int dsr6_insert(struct __sk_buff *skb, const __u32 *vip, __u16 vport)
{
	struct dsr_opt_v6 opt = { .hdrlen = DSR_IPV6_EXT_LEN / 8 - 1, .type = DSR_IPV6_OPT_TYPE, .len = DSR_IPV6_OPT_LEN,
				  .port = vport };
	void *data, *end;
	struct ipv6hdr *ip6;

	_Static_assert(sizeof(struct dsr_opt_v6) == DSR_IPV6_EXT_LEN, "the IPv6 DSR header is 24 bytes");
	__builtin_memcpy(opt.addr, vip, sizeof(opt.addr));
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	ip6 = data + ETH_HLEN;
	if ((void *)(ip6 + 1) > end)
		return -DROP_DSR;
	opt.nexthdr = ip6->nexthdr;
	if (bpf_skb_adjust_room(skb, sizeof(opt), BPF_ADJ_ROOM_NET, 0) < 0)
		return -DROP_DSR;
	if (bpf_skb_store_bytes(skb, ETH_HLEN + sizeof(struct ipv6hdr), &opt, sizeof(opt), 0) < 0)
		return -DROP_DSR;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	ip6 = data + ETH_HLEN;
	if ((void *)(ip6 + 1) > end)
		return -DROP_DSR;
	ip6->nexthdr = NEXTHDR_DEST;
	ip6->payload_len = bpf_htons(bpf_ntohs(ip6->payload_len) + sizeof(opt));
	return 0;
}

/* Records a DSR reply entry for the option's packet, whose L4 header is
 * at `l4`. A TCP SYN or a UDP datagram writes it whatever the tuple held
 * (the backend's socket sees one connection per tuple, so the newest is
 * the live one). A later TCP segment (a flow that moved to another
 * load-balancing node) never replaces the entry of a flow this node
 * translated itself (a ClusterIP, a local NodePort, a hairpin) while it
 * lives. The option is valid either way: 1. */
static __always_inline int dsr_record(const struct ct_key *k, const struct ct_entry *e, const __u8 *l4, void *end)
{
	struct ct_entry *held;
	int syn = 1; /* or a datagram */

	if (k->proto == IPPROTO_TCP) {
		if ((void *)(l4 + 14) > end)
			return 0;
		syn = (l4[13] & 0x12) == 0x02;
	}
	held = bpf_map_lookup_elem(&merle_ct, k);
	if (held && !syn && !(held->flags & CT_F_DSR) && !ct_expired(held, k->proto, ct_now()))
		return 1;
	ct_write(k, held, e);
	return 1;
}

/* On the backend's node: a packet for a local pod that carries the
 * option. Records where its replies must come from; 1 when it did (the
 * caller then lets the option through), 0 for any other packet. */
static __noinline int dsr4_accept(struct __sk_buff *skb, const struct iphdr *ip)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ct_key k = { .family = AF_INET, .dir = CT_REPLY };
	struct ct_entry e = { .flags = CT_F_DSR, .seen = ct_now() };
	const struct dsr_opt_v4 *opt;
	const struct l4_ports *p;

	if (ip->ihl != 7 || !l4_is_tcp_udp(ip->protocol))
		return 0;
	opt = data + ETH_HLEN + sizeof(struct iphdr);
	p = (const void *)(opt + 1);
	if ((void *)(p + 1) > end)
		return 0;
	if (opt->type != DSR_IPV4_OPT_TYPE || opt->len != DSR_IPV4_OPT_LEN)
		return 0;
	/* A fragment after the first carries the option too (it has the
	 * copy bit) but no ports: the stack reassembles those. */
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return 0;
	k.proto = ip->protocol;
	k.saddr[0] = ip->daddr;
	k.daddr[0] = ip->saddr;
	k.sport = p->dport;
	k.dport = p->sport;
	e.addr[0] = opt->addr;
	e.port = opt->port;
	return dsr_record(&k, &e, (const __u8 *)p, end);
}

static __noinline int dsr6_accept(struct __sk_buff *skb, const struct ipv6hdr *ip6)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ct_key k = { .family = AF_INET6, .dir = CT_REPLY };
	struct ct_entry e = { .flags = CT_F_DSR, .seen = ct_now() };
	const struct dsr_opt_v6 *opt;
	const struct l4_ports *p;

	if (ip6->nexthdr != NEXTHDR_DEST)
		return 0;
	opt = data + ETH_HLEN + sizeof(struct ipv6hdr);
	p = (const void *)(opt + 1);
	if ((void *)(p + 1) > end)
		return 0;
	if (opt->type != DSR_IPV6_OPT_TYPE || opt->len != DSR_IPV6_OPT_LEN || opt->hdrlen != DSR_IPV6_EXT_LEN / 8 - 1 ||
	    !l4_is_tcp_udp(opt->nexthdr))
		return 0;
	k.proto = opt->nexthdr;
	__builtin_memcpy(k.saddr, &ip6->daddr, sizeof(k.saddr));
	__builtin_memcpy(k.daddr, &ip6->saddr, sizeof(k.daddr));
	k.sport = p->dport;
	k.dport = p->sport;
	__builtin_memcpy(e.addr, opt->addr, sizeof(e.addr));
	e.port = opt->port;
	return dsr_record(&k, &e, (const __u8 *)p, end);
}

#endif
