/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Checksums: the incremental IPv4 header checksum update of RFC 1624 for
 * a TTL decremented by one, as the kernel's ip_decrease_ttl does it, done
 * in place (no helper call: direct packet access keeps the pointers
 * valid). */
#ifndef MERLE_CSUM_H
#define MERLE_CSUM_H

#include <linux/ip.h>
#include "common.h"

static __always_inline void csum_ttl_dec(struct iphdr *ip)
{
	__u32 check = (__u32)ip->check;

	check += (__u32)bpf_htons(0x0100);
	ip->check = (__sum16)(check + (check >= 0xFFFF));
}

#endif
