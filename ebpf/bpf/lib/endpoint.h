/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* merle_endpoints: the pods of this node, by address. merle-cni writes an
 * entry at ADD and removes it at DEL; merled reconciles the map with the
 * pods that exist when it starts. Delivering to an endpoint is a routed
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
