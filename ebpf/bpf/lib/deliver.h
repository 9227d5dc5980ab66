/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Delivery to a pod of this node: a routed hop into the pod's namespace
 * with bpf_redirect_peer (no backlog queue, no second pass through the
 * host's stack). Shared by the pod program (pod to pod on one node) and
 * the node program (arriving from the wire or from vxlan.merle). A reply
 * of a service flow gets its source translated back first (lib/lb.h). */
#ifndef MERLE_DELIVER_H
#define MERLE_DELIVER_H

#include "common.h"
#include "drop.h"
#include "eth.h"
#include "ipv4.h"
#include "ipv6.h"
#include "lb.h"
#include "types.h"

static __always_inline int deliver(struct __sk_buff *skb, const struct endpoint_info *ep)
{
	struct ethhdr *eth = eth_header(skb);
	__u32 ifindex = ep->ifindex;

	if (!eth)
		return -DROP_INVALID_IPV4;
	eth_rewrite(eth, ep->pod_mac, ep->node_mac);
	note_target(skb, ifindex);
	if (bpf_redirect_peer(ifindex, 0) != TC_ACT_REDIRECT)
		return -DROP_REDIRECT;
	return REASON_REDIRECT_PEER;
}

/* `rev`: look for a service reply to translate (the node program; the pod
 * program has looked already, as the packet left its pod). */
static __always_inline int deliver_v4(struct __sk_buff *skb, struct iphdr *ip, const struct endpoint_info *ep, int rev)
{
	if (rev && lb_active()) {
		int r = lb4_rev_nat(skb);

		if (r < 0)
			return r;
		/* A subprogram that may rewrite the packet: load again. */
		ip = ipv4_header(skb);
		if (!ip)
			return -DROP_INVALID_IPV4;
	}
	ipv4_dec_ttl(ip);
	return deliver(skb, ep);
}

static __always_inline int deliver_v6(struct __sk_buff *skb, struct ipv6hdr *ip6, const struct endpoint_info *ep,
				      int rev)
{
	if (rev && lb_active()) {
		int r = lb6_rev_nat(skb);

		if (r < 0)
			return r;
		ip6 = ipv6_header(skb);
		if (!ip6)
			return -DROP_INVALID_IPV6;
	}
	ipv6_dec_hop_limit(ip6);
	return deliver(skb, ep);
}

#endif
