/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* merle_nets4 / merle_nets6: the cluster's ranges (pools, service ranges,
 * node subnets) by longest prefix, so a program can tell traffic that
 * leaves the cluster. Outgoing NAT (a pool's nat_outgoing) is done by the
 * kernel's netfilter rules that merled owns: such packets go to the stack
 * rather than around it. */
#ifndef MERLE_NETS_H
#define MERLE_NETS_H

#include "common.h"
#include "types.h"

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, NETS_MAX);
	__type(key, struct net_key4);
	__type(value, struct net_info);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} merle_nets4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, NETS_MAX);
	__type(key, struct net_key6);
	__type(value, struct net_info);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} merle_nets6 SEC(".maps");

static __always_inline __u32 nets_v4(__be32 addr)
{
	struct net_key4 k = { .prefixlen = 32, .addr = addr };
	struct net_info *n = bpf_map_lookup_elem(&merle_nets4, &k);

	return n ? n->flags : 0;
}

static __always_inline __u32 nets_v6(const struct in6_addr *a)
{
	struct net_key6 k = { .prefixlen = 128 };
	struct net_info *n;

	__builtin_memcpy(k.addr, a, sizeof(k.addr));
	n = bpf_map_lookup_elem(&merle_nets6, &k);
	return n ? n->flags : 0;
}

/* A packet from a pod of a nat_outgoing pool (`nat` is the source's
 * flag) to outside every cluster range: the range lookup is paid only by
 * such pods. */
static __always_inline int nat_outgoing_v4(__u32 nat, __be32 daddr)
{
	return nat && nets_v4(daddr) == 0;
}

static __always_inline int nat_outgoing_v6(__u32 nat, const struct in6_addr *daddr)
{
	return nat && nets_v6(daddr) == 0;
}

#endif
