/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The flow hash that picks a Maglev slot: Bob Jenkins' lookup3 final mix
 * over the tuple, seeded alike on every node, so that every node sends a
 * flow to the same backend. merle-lb's flow_hash is the same function in
 * Rust, and a test holds the two equal. */
#ifndef MERLE_HASH_H
#define MERLE_HASH_H

#include "common.h"

#define FLOW_HASH_SEED 0x6d65726cU /* "merl" */

static __always_inline __u32 rol32(__u32 w, __u32 s)
{
	return (w << s) | (w >> (32 - s));
}

/* lookup3's final(a, b, c): returns c. */
static __always_inline __u32 hash_final(__u32 a, __u32 b, __u32 c)
{
	c ^= b; c -= rol32(b, 14);
	a ^= c; a -= rol32(c, 11);
	b ^= a; b -= rol32(a, 25);
	c ^= b; c -= rol32(b, 16);
	a ^= c; a -= rol32(c, 4);
	b ^= a; b -= rol32(a, 14);
	c ^= b; c -= rol32(b, 24);
	return c;
}

/* Three words into a running hash. */
static __always_inline __u32 hash_3words(__u32 a, __u32 b, __u32 c, __u32 h)
{
	h += 0xdeadbeefU + (3U << 2);
	return hash_final(a + h, b + h, c + h);
}

/* Words are taken as they sit in the packet (network order), ports as
 * (sport << 16 | dport) of the network-order values. */
static __always_inline __u32 flow_hash_v4(__u32 saddr, __u32 daddr, __u16 sport, __u16 dport, __u8 proto)
{
	return hash_3words(saddr, daddr, ((__u32)sport << 16) | dport, FLOW_HASH_SEED ^ proto);
}

static __always_inline __u32 flow_hash_v6(const __u32 *saddr, const __u32 *daddr, __u16 sport, __u16 dport, __u8 proto)
{
	__u32 h = hash_3words(saddr[0], saddr[1], saddr[2], FLOW_HASH_SEED ^ proto);

	h = hash_3words(saddr[3], daddr[0], daddr[1], h);
	h = hash_3words(daddr[2], daddr[3], ((__u32)sport << 16) | dport, h);
	return h;
}

#endif
