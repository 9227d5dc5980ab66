/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* IPv4 (RFC 791): header validation, what must go to the stack (options,
 * fragments, an expiring TTL) and the TTL decrement of a routed hop. */
#ifndef MERLE_IPV4_H
#define MERLE_IPV4_H

#include <linux/ip.h>
#include "common.h"
#include "csum.h"
#include "drop.h"

#define IP_MF     0x2000
#define IP_OFFSET 0x1fff

/* The IPv4 header after the Ethernet header, or NULL when the packet is
 * too short for 20 bytes of it. */
static __always_inline struct iphdr *ipv4_header(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;

	if ((void *)(ip + 1) > end)
		return NULL;
	return ip;
}

/* 0 when the header is sound and the packet may be forwarded here, a
 * PASS_* reason when the stack must have it, or -DROP_INVALID_IPV4.
 * Options go to the stack unless `options_ok` (the DSR option, which
 * lib/dsr.h has read). */
static __always_inline int ipv4_check_options(struct __sk_buff *skb, const struct iphdr *ip, int options_ok)
{
	if (ip->version != 4 || ip->ihl < 5)
		return -DROP_INVALID_IPV4;
	if (bpf_ntohs(ip->tot_len) < (__u32)ip->ihl * 4 || bpf_ntohs(ip->tot_len) > skb->len - ETH_HLEN)
		return -DROP_INVALID_IPV4;
	if (ip->ihl != 5 && !options_ok)
		return PASS_IP_OPTIONS;
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return PASS_FRAGMENT;
	if (ip->ttl <= 1)
		return PASS_TTL;
	return 0;
}

static __always_inline int ipv4_check(struct __sk_buff *skb, const struct iphdr *ip)
{
	return ipv4_check_options(skb, ip, 0);
}

/* The header checksum of the IPv4 header of `len` bytes (a constant) at
 * `ip`, computed in full. */
static __always_inline __u16 ipv4_csum(const void *ip, __u32 len)
{
	const __u16 *w = ip;
	__u32 sum = 0;

#pragma unroll
	for (__u32 i = 0; i < len / 2; i++)
		if (i != 5) /* the checksum field */
			sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Decrements the TTL and fixes the header checksum (RFC 1624). */
static __always_inline void ipv4_dec_ttl(struct iphdr *ip)
{
	csum_ttl_dec(ip);
	ip->ttl--;
}

#endif
