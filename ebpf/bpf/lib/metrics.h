/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* merle_metrics: per-CPU packet and byte counters, one per (hook, reason). */
#ifndef MERLE_METRICS_H
#define MERLE_METRICS_H

#include "common.h"
#include "types.h"
#include "drop.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, METRICS_MAX);
	__type(key, __u32);
	__type(value, struct metrics_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} merle_metrics SEC(".maps");

static __always_inline void count(struct __sk_buff *skb, __u32 hook, __u32 reason)
{
	__u32 idx = METRIC_INDEX(hook, reason);
	struct metrics_value *v = bpf_map_lookup_elem(&merle_metrics, &idx);

	if (v) {
		v->packets++;
		v->bytes += skb->len;
	}
}

/* Counts an internal function's result (a reason, or a negated drop
 * reason) and returns the tc verdict that goes with it. */
static __always_inline int account(struct __sk_buff *skb, __u32 hook, int r)
{
	count(skb, hook, (__u32)(r < 0 ? -r : r));
	return reason_verdict(r);
}

#endif
