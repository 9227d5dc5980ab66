/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Forwarding by the kernel's FIB without the stack: bpf_fib_lookup finds
 * the route fib-sync installed (native, ECMP, or onlink via vxlan.merle)
 * and the neighbour; the packet leaves by bpf_redirect with its MACs
 * rewritten and its TTL or hop limit decremented. NO_NEIGH hands the
 * packet to bpf_redirect_neigh, which resolves the neighbour. Any other
 * answer goes to the stack, which sends the ICMP error or delivers
 * locally. The lookup leaves tot_len 0: with it set, GSO super-packets are
 * refused as FRAG_NEEDED. */
#ifndef MERLE_FIB_H
#define MERLE_FIB_H

#include "common.h"
#include "drop.h"
#include "eth.h"
#include "ipv4.h"
#include "ipv6.h"

static __always_inline int fib_result(struct __sk_buff *skb, struct bpf_fib_lookup *p, long rc)
{
	struct bpf_redir_neigh nh = {};

	struct ethhdr *eth;

	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		/* Reloaded: the lookup is a helper call. */
		eth = eth_header(skb);
		if (!eth)
			return -DROP_INVALID_IPV4;
		eth_rewrite(eth, p->dmac, p->smac);
		note_target(skb, p->ifindex);
		if (bpf_redirect(p->ifindex, 0) != TC_ACT_REDIRECT)
			return -DROP_REDIRECT;
		return REASON_REDIRECT_FIB;
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		nh.nh_family = p->family;
		if (p->family == AF_INET)
			nh.ipv4_nh = p->ipv4_dst;
		else
			__builtin_memcpy(nh.ipv6_nh, p->ipv6_dst, sizeof(nh.ipv6_nh));
		note_target(skb, p->ifindex);
		if (bpf_redirect_neigh(p->ifindex, &nh, sizeof(nh), 0) != TC_ACT_REDIRECT)
			return -DROP_REDIRECT;
		return REASON_REDIRECT_NEIGH;
	case BPF_FIB_LKUP_RET_NOT_FWDED:
		return PASS_LOCAL;
	case BPF_FIB_LKUP_RET_BLACKHOLE:
		return -DROP_FIB_BLACKHOLE;
	default:
		return PASS_FIB;
	}
}

/* Routes an IPv4 packet that passed ipv4_check. */
static __always_inline int fib_forward_v4(struct __sk_buff *skb, struct iphdr *ip)
{
	struct bpf_fib_lookup p = {};
	long rc;

	p.family = AF_INET;
	p.tos = ip->tos;
	p.l4_protocol = ip->protocol;
	p.ipv4_src = ip->saddr;
	p.ipv4_dst = ip->daddr;
	p.ifindex = skb->ifindex;
	rc = bpf_fib_lookup(skb, &p, sizeof(p), 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		if (p.ifindex == skb->ifindex)
			return PASS_HAIRPIN;
		/* The packet pointers are reloaded after the helper call. */
		ip = ipv4_header(skb);
		if (!ip)
			return -DROP_INVALID_IPV4;
		ipv4_dec_ttl(ip);
	}
	return fib_result(skb, &p, rc);
}

/* Routes an IPv6 packet that passed ipv6_check. */
static __always_inline int fib_forward_v6(struct __sk_buff *skb, struct ipv6hdr *ip6)
{
	struct bpf_fib_lookup p = {};
	long rc;

	p.family = AF_INET6;
	p.flowinfo = *(__be32 *)ip6 & bpf_htonl(0x0fffffff);
	p.l4_protocol = ip6->nexthdr;
	__builtin_memcpy(p.ipv6_src, &ip6->saddr, sizeof(p.ipv6_src));
	__builtin_memcpy(p.ipv6_dst, &ip6->daddr, sizeof(p.ipv6_dst));
	p.ifindex = skb->ifindex;
	rc = bpf_fib_lookup(skb, &p, sizeof(p), 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		if (p.ifindex == skb->ifindex)
			return PASS_HAIRPIN;
		ip6 = ipv6_header(skb);
		if (!ip6)
			return -DROP_INVALID_IPV6;
		ipv6_dec_hop_limit(ip6);
	}
	return fib_result(skb, &p, rc);
}

#endif
