/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* IPv6 (RFC 8200): header validation, what must go to the stack
 * (link-local and multicast destinations, fragments, an expiring hop
 * limit) and the hop-limit decrement of a routed hop. */
#ifndef MERLE_IPV6_H
#define MERLE_IPV6_H

#include <linux/ipv6.h>
#include "common.h"
#include "drop.h"

#ifndef IPPROTO_FRAGMENT
#define IPPROTO_FRAGMENT 44
#endif

static __always_inline struct ipv6hdr *ipv6_header(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + ETH_HLEN;

	if ((void *)(ip6 + 1) > end)
		return NULL;
	return ip6;
}

/* fe80::/10 or ff00::/8: neighbour discovery and friends. */
static __always_inline int ipv6_is_link_scope(const struct in6_addr *a)
{
	__u8 b0 = a->in6_u.u6_addr8[0], b1 = a->in6_u.u6_addr8[1];

	return b0 == 0xff || (b0 == 0xfe && (b1 & 0xc0) == 0x80);
}

/* 0 when the packet may be forwarded here, a PASS_* reason, or
 * -DROP_INVALID_IPV6. */
static __always_inline int ipv6_check(struct __sk_buff *skb, const struct ipv6hdr *ip6)
{
	if (ip6->version != 6)
		return -DROP_INVALID_IPV6;
	if ((__u32)bpf_ntohs(ip6->payload_len) + sizeof(*ip6) > skb->len - ETH_HLEN)
		return -DROP_INVALID_IPV6;
	if (ipv6_is_link_scope(&ip6->daddr) || ipv6_is_link_scope(&ip6->saddr))
		return PASS_LINK_LOCAL;
	if (ip6->nexthdr == IPPROTO_FRAGMENT)
		return PASS_FRAGMENT;
	if (ip6->hop_limit <= 1)
		return PASS_TTL;
	return 0;
}

/* Decrements the hop limit: IPv6 has no header checksum. */
static __always_inline void ipv6_dec_hop_limit(struct ipv6hdr *ip6)
{
	ip6->hop_limit--;
}

#endif
