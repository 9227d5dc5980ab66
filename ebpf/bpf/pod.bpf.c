// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* pod.bpf.c: tc ingress of the host end of a pod's veth, that is, every
 * packet a pod sends. merle-cni links it at ADD (TCX where the kernel has
 * it, else a clsact filter) to the copy merled loaded and pinned.
 *
 *   a service's reply          its source translated back to the
 *                              frontend (lib/lb.h), then as below
 *   to a service frontend      DNAT to the backend conntrack or Maglev
 *                              picks (lib/lb.h), then as below
 *   to a pod of this node      bpf_redirect_peer into it (lib/deliver.h)
 *   leaving the cluster from a
 *     nat_outgoing pool        the stack, whose netfilter rules masquerade
 *   anything else              bpf_fib_lookup, bpf_redirect with the MACs
 *                              rewritten (lib/fib.h); NO_NEIGH:
 *                              bpf_redirect_neigh; other answers: the stack
 *
 * ARP, neighbour discovery, IPv4 options, fragments, an expiring TTL and
 * packets for the node itself all go to the stack unchanged. A source that
 * belongs to another pod's veth is dropped; the veth's own address is
 * checked against its merle_pod_ifaces entry (one load), any other source
 * by an endpoint lookup. Every verdict is counted under
 * HOOK_POD_INGRESS with its reason. */

#include "lib/common.h"
#include "lib/deliver.h"
#include "lib/drop.h"
#include "lib/endpoint.h"
#include "lib/eth.h"
#include "lib/fib.h"
#include "lib/ipv4.h"
#include "lib/ipv6.h"
#include "lib/lb.h"
#include "lib/metrics.h"
#include "lib/nets.h"

/* The source check: 0 for a source that is an endpoint of this veth, with
 * its nat_outgoing flag in *nat; else the reason. The veth's own entry
 * answers for its usual address with one load; any other source is looked
 * up by address. */
static __always_inline int source_v4(const struct __sk_buff *skb, __be32 saddr, __u32 *nat)
{
	const struct pod_iface *me = pod_iface(skb->ifindex);
	struct endpoint_info *src;

	if (me && (me->flags & POD_IFACE_F_V4) && me->v4 == saddr) {
		*nat = me->flags & POD_IFACE_F_NAT_OUTGOING_V4;
		return 0;
	}
	src = endpoint_v4(saddr);
	if (!src)
		return PASS_UNKNOWN_SOURCE;
	if (src->ifindex != skb->ifindex)
		return -DROP_SOURCE_SPOOFED;
	*nat = src->flags & ENDPOINT_F_NAT_OUTGOING;
	return 0;
}

static __always_inline int source_v6(const struct __sk_buff *skb, const struct in6_addr *saddr, __u32 *nat)
{
	const struct pod_iface *me = pod_iface(skb->ifindex);
	struct endpoint_info *src;

	if (me && (me->flags & POD_IFACE_F_V6) && me->v6[0] == saddr->in6_u.u6_addr32[0] &&
	    me->v6[1] == saddr->in6_u.u6_addr32[1] && me->v6[2] == saddr->in6_u.u6_addr32[2] &&
	    me->v6[3] == saddr->in6_u.u6_addr32[3]) {
		*nat = me->flags & POD_IFACE_F_NAT_OUTGOING_V6;
		return 0;
	}
	src = endpoint_v6(saddr);
	if (!src)
		return PASS_UNKNOWN_SOURCE;
	if (src->ifindex != skb->ifindex)
		return -DROP_SOURCE_SPOOFED;
	*nat = src->flags & ENDPOINT_F_NAT_OUTGOING;
	return 0;
}

/* After DNAT: to the backend, on this node or another. */
static __always_inline int to_backend_v4(struct __sk_buff *skb)
{
	struct iphdr *ip = ipv4_header(skb);
	struct endpoint_info *dst;

	if (!ip)
		return -DROP_INVALID_IPV4;
	dst = endpoint_v4(ip->daddr);
	if (dst) {
		/* Back into the pod it came from: only as HAIRPIN_V4's. */
		if (dst->ifindex == skb->ifindex && ip->saddr != HAIRPIN_V4)
			return -DROP_SERVICE_LOOPBACK;
		return deliver_v4(skb, ip, dst, 0);
	}
	return fib_forward_v4(skb, ip);
}

static __always_inline int to_backend_v6(struct __sk_buff *skb)
{
	struct ipv6hdr *ip6 = ipv6_header(skb);
	struct endpoint_info *dst;

	if (!ip6)
		return -DROP_INVALID_IPV6;
	dst = endpoint_v6(&ip6->daddr);
	if (dst) {
		/* Back into the pod it came from: only as the hairpin's. */
		if (dst->ifindex == skb->ifindex && !lb_is_hairpin(AF_INET6, ip6->saddr.in6_u.u6_addr32))
			return -DROP_SERVICE_LOOPBACK;
		return deliver_v6(skb, ip6, dst, 0);
	}
	return fib_forward_v6(skb, ip6);
}

static __always_inline int from_pod_v4(struct __sk_buff *skb)
{
	struct iphdr *ip = ipv4_header(skb);
	struct endpoint_info *dst;
	__u32 nat = 0;
	int r, lb, rev = 0;

	if (!ip)
		return -DROP_INVALID_IPV4;
	r = ipv4_check(skb, ip);
	if (r != 0)
		return r;
	r = source_v4(skb, ip->saddr, &nat);
	if (r != 0)
		return r;
	lb = lb_active();
	if (lb) {
		r = lb4_rev_nat(skb);
		if (r < 0)
			return r;
		rev = r > 0;
		/* A subprogram that may rewrite the packet: load again. */
		ip = ipv4_header(skb);
		if (!ip)
			return -DROP_INVALID_IPV4;
	}
	dst = endpoint_v4(ip->daddr);
	if (dst) {
		/* A translated reply may be for its own pod (a service the pod
		 * backs itself). */
		if (dst->ifindex == skb->ifindex && !rev)
			return PASS_HAIRPIN;
		return deliver_v4(skb, ip, dst, 0);
	}
	/* A translated reply goes to its client as it is. */
	if (rev)
		return fib_forward_v4(skb, ip);
	if (lb) {
		r = lb4_dnat(skb, ip);
		if (r < 0)
			return r;
		if (r == LB_DNAT)
			return to_backend_v4(skb);
	}
	if (nat_outgoing_v4(nat, ip->daddr))
		return PASS_NAT_OUTGOING;
	return fib_forward_v4(skb, ip);
}

static __always_inline int from_pod_v6(struct __sk_buff *skb)
{
	struct ipv6hdr *ip6 = ipv6_header(skb);
	struct endpoint_info *dst;
	__u32 nat = 0;
	int r, lb, rev = 0;

	if (!ip6)
		return -DROP_INVALID_IPV6;
	r = ipv6_check(skb, ip6);
	if (r != 0)
		return r;
	r = source_v6(skb, &ip6->saddr, &nat);
	if (r != 0)
		return r;
	lb = lb_active();
	if (lb) {
		r = lb6_rev_nat(skb);
		if (r < 0)
			return r;
		rev = r > 0;
		/* A subprogram that may rewrite the packet: load again. */
		ip6 = ipv6_header(skb);
		if (!ip6)
			return -DROP_INVALID_IPV6;
	}
	dst = endpoint_v6(&ip6->daddr);
	if (dst) {
		/* A translated reply may be for its own pod (a service the pod
		 * backs itself). */
		if (dst->ifindex == skb->ifindex && !rev)
			return PASS_HAIRPIN;
		return deliver_v6(skb, ip6, dst, 0);
	}
	/* A translated reply goes to its client as it is. */
	if (rev)
		return fib_forward_v6(skb, ip6);
	if (lb) {
		r = lb6_dnat(skb, ip6);
		if (r < 0)
			return r;
		if (r == LB_DNAT)
			return to_backend_v6(skb);
	}
	if (nat_outgoing_v6(nat, &ip6->daddr))
		return PASS_NAT_OUTGOING;
	return fib_forward_v6(skb, ip6);
}

static __always_inline int from_pod(struct __sk_buff *skb)
{
	__be16 proto;
	int r = eth_ip_for_us(skb, &proto);

	if (r)
		return r;
	return proto == bpf_htons(ETH_P_IP) ? from_pod_v4(skb) : from_pod_v6(skb);
}

SEC("classifier")
int pod_ingress(struct __sk_buff *skb)
{
	return account(skb, HOOK_POD_INGRESS, from_pod(skb));
}

char __license[] SEC("license") = "Dual BSD/GPL";
