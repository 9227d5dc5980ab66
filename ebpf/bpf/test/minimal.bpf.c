// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* test/minimal.bpf.c: the minimal datapath that ../shared/REFERENCE.md's
 * goals come from, for `testbed bench datapath` to measure in the same run
 * as merle's programs. It is not merle's datapath: no endpoint map, no
 * source check, no counters, no NAT, IPv4 only, no IPv4 options or
 * fragment handling. The benchmark points merle's pinned links at these two
 * programs (BPF_LINK_UPDATE) and back.
 *
 *   minimal_pod   host veth ingress: bpf_fib_lookup, MACs and TTL
 *                 rewritten, bpf_redirect; NO_NEIGH: bpf_redirect_neigh
 *   minimal_node  uplink ingress: bpf_fib_lookup; a route out of another
 *                 interface (a pod's host veth) with a known neighbour:
 *                 MACs and TTL rewritten, bpf_redirect_peer */

#include <linux/ip.h>
#include "../lib/common.h"
#include "../lib/csum.h"

static __always_inline int lookup(struct __sk_buff *skb, struct bpf_fib_lookup *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ttl <= 1)
		return -1;
	p->family = AF_INET;
	p->tos = ip->tos;
	p->l4_protocol = ip->protocol;
	p->ipv4_src = ip->saddr;
	p->ipv4_dst = ip->daddr;
	p->ifindex = skb->ifindex;
	return bpf_fib_lookup(skb, p, sizeof(*p), 0);
}

/* Rewrites the MACs and the TTL after a successful lookup; 0 when the
 * packet is still long enough to do it. */
static __always_inline int rewrite(struct __sk_buff *skb, const struct bpf_fib_lookup *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;

	if ((void *)(ip + 1) > end)
		return -1;
	csum_ttl_dec(ip);
	ip->ttl--;
	__builtin_memcpy(eth->h_dest, p->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, p->smac, ETH_ALEN);
	return 0;
}

SEC("classifier")
int minimal_pod(struct __sk_buff *skb)
{
	struct bpf_fib_lookup p = {};
	struct bpf_redir_neigh nh = {};
	int rc = lookup(skb, &p);

	if (rc == BPF_FIB_LKUP_RET_SUCCESS && p.ifindex != skb->ifindex) {
		if (rewrite(skb, &p))
			return TC_ACT_OK;
		return bpf_redirect(p.ifindex, 0);
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH && p.ifindex != skb->ifindex) {
		nh.nh_family = AF_INET;
		nh.ipv4_nh = p.ipv4_dst;
		return bpf_redirect_neigh(p.ifindex, &nh, sizeof(nh), 0);
	}
	return TC_ACT_OK;
}

SEC("classifier")
int minimal_node(struct __sk_buff *skb)
{
	struct bpf_fib_lookup p = {};
	int rc = lookup(skb, &p);

	if (rc == BPF_FIB_LKUP_RET_SUCCESS && p.ifindex != skb->ifindex) {
		if (rewrite(skb, &p))
			return TC_ACT_OK;
		return bpf_redirect_peer(p.ifindex, 0);
	}
	return TC_ACT_OK;
}

char __license[] SEC("license") = "Dual BSD/GPL";
