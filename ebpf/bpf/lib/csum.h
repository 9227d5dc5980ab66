/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Checksums: the incremental IPv4 header checksum update of RFC 1624, done
 * by the kernel's bpf_l3_csum_replace. Packet pointers are invalid after
 * it: callers reload them. */
#ifndef MERLE_CSUM_H
#define MERLE_CSUM_H

#include "common.h"

/* Replaces the 16-bit word at `off` (network order values) and fixes the
 * IPv4 header checksum at `csum_off`. */
static __always_inline int csum_replace16(struct __sk_buff *skb, __u32 csum_off, __u32 off, __be16 old,
					  __be16 new)
{
	if (bpf_l3_csum_replace(skb, csum_off, old, new, sizeof(__u16)) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, off, &new, sizeof(new), 0) < 0 ? -1 : 0;
}

#endif
