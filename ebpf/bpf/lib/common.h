/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* What every merle program includes: the kernel's uapi, libbpf's helper
 * declarations and a few macros. Everything under lib/ is header-only, one
 * concern per file, as in Cilium's bpf/lib. */
#ifndef MERLE_COMMON_H
#define MERLE_COMMON_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* A redirect leaves its target in cb[0]: BPF_PROG_TEST_RUN hands the
 * context back, so the tests can check where a packet would have gone.
 * cb[] is the program's own scratch space; nothing after tc reads it. */
static __always_inline void note_target(struct __sk_buff *skb, __u32 ifindex)
{
	skb->cb[0] = ifindex;
}

#endif
