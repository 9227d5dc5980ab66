/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* merle_endpoints: the pods of this node, by address. merle-cni writes an
 * entry at ADD and removes it at DEL; merled reconciles the map with the
 * pods that exist when it starts. merle_pod_ifaces: the same pods by the
 * ifindex of their host veth, for the source check (lib/types.h). Delivering to an endpoint is a routed
 * hop: MACs rewritten, TTL decremented, then bpf_redirect_peer into the
 * pod's namespace. */
#ifndef MERLE_ENDPOINT_H
#define MERLE_ENDPOINT_H

#include "common.h"
#include "types.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ENDPOINTS_MAX);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_info);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} merle_endpoints SEC(".maps");

_Static_assert((POD_IFACES_MAX & (POD_IFACES_MAX - 1)) == 0, "POD_IFACES_MAX must be a power of two");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, POD_IFACES_MAX);
	__type(key, __u32);
	__type(value, struct pod_iface);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} merle_pod_ifaces SEC(".maps");

/* The entry of the pod veth `ifindex`, or NULL when its slot holds none
 * or another veth's (the verifier inlines the lookup: a bounds check and
 * a load). */
static __always_inline const struct pod_iface *pod_iface(__u32 ifindex)
{
	__u32 slot = ifindex & (POD_IFACES_MAX - 1);
	const struct pod_iface *e = bpf_map_lookup_elem(&merle_pod_ifaces, &slot);

	if (!e || e->ifindex != ifindex)
		return NULL;
	return e;
}

static __always_inline struct endpoint_info *endpoint_v4(__be32 addr)
{
	struct endpoint_key k = { .family = AF_INET, .addr = { addr, 0, 0, 0 } };

	return bpf_map_lookup_elem(&merle_endpoints, &k);
}

static __always_inline struct endpoint_info *endpoint_v6(const struct in6_addr *a)
{
	struct endpoint_key k = { .family = AF_INET6 };

	__builtin_memcpy(k.addr, a, sizeof(k.addr));
	return bpf_map_lookup_elem(&merle_endpoints, &k);
}

#endif
