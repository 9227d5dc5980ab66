// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* node.bpf.c: tc ingress of the node's uplinks and of vxlan.merle (after
 * decapsulation), that is, every packet that arrives for this node from
 * the wire. merled loads, attaches and pins it.
 *
 *   to a pod of this node      bpf_redirect_peer into it (lib/deliver.h),
 *                              skipping the host's stack and netfilter; a
 *                              DSR request's option is recorded first
 *                              (lib/dsr.h), a service reply translated
 *   to a service frontend      the backend's way (lib/nodeport.h): local,
 *                              DSR or SNAT; a SNAT reply reversed
 *   anything else              the stack, untouched
 *
 * Every verdict is counted under HOOK_NODE_INGRESS with its reason. */

#include "lib/common.h"
#include "lib/deliver.h"
#include "lib/drop.h"
#include "lib/endpoint.h"
#include "lib/eth.h"
#include "lib/ipv4.h"
#include "lib/ipv6.h"
#include "lib/metrics.h"
#include "lib/nodeport.h"

static __always_inline int to_pod_v4(struct __sk_buff *skb)
{
	struct iphdr *ip = ipv4_header(skb);
	struct endpoint_info *ep;
	__u32 mtu = 0;
	int r, dsr = 0;

	if (!ip)
		return PASS_NO_ENDPOINT;
	ep = endpoint_v4(ip->daddr);
	if (!ep) {
		if (!lb_active())
			return PASS_NO_ENDPOINT;
		r = lb4_snat_reply(skb);
		if (r == LB_NONE)
			r = lb4_nodeport(skb, &mtu);
		if (r == LB_TOO_BIG)
			return icmp4_too_big(skb, mtu);
		return r == LB_NONE ? PASS_NO_ENDPOINT : r;
	}
	if (ip->ihl == 7 && lb_active())
		dsr = dsr4_accept(skb, ip);
	r = ipv4_check_options(skb, ip, dsr);
	if (r != 0)
		return r;
	/* A request that carried the option is no service reply. */
	return deliver_v4(skb, ip, ep, !dsr);
}

static __always_inline int to_pod_v6(struct __sk_buff *skb)
{
	struct ipv6hdr *ip6 = ipv6_header(skb);
	struct endpoint_info *ep;
	__u32 mtu = 0;
	int r, dsr = 0;

	if (!ip6)
		return PASS_NO_ENDPOINT;
	ep = endpoint_v6(&ip6->daddr);
	if (!ep) {
		if (!lb_active())
			return PASS_NO_ENDPOINT;
		r = lb6_snat_reply(skb);
		if (r == LB_NONE)
			r = lb6_nodeport(skb, &mtu);
		if (r == LB_TOO_BIG)
			return icmp6_too_big(skb, mtu);
		return r == LB_NONE ? PASS_NO_ENDPOINT : r;
	}
	if (ip6->nexthdr == NEXTHDR_DEST && lb_active())
		dsr = dsr6_accept(skb, ip6);
	r = ipv6_check(skb, ip6);
	if (r != 0)
		return r;
	return deliver_v6(skb, ip6, ep, !dsr);
}

static __always_inline int to_node(struct __sk_buff *skb)
{
	__be16 proto;
	int r = eth_ip_for_us(skb, &proto);

	if (r)
		return r;
	return proto == bpf_htons(ETH_P_IP) ? to_pod_v4(skb) : to_pod_v6(skb);
}

SEC("classifier")
int node_ingress(struct __sk_buff *skb)
{
	return account(skb, HOOK_NODE_INGRESS, to_node(skb));
}

char __license[] SEC("license") = "Dual BSD/GPL";
