/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Ethernet: the header and the MAC rewrite of a routed hop. */
#ifndef MERLE_ETH_H
#define MERLE_ETH_H

#include "common.h"
#include "drop.h"

static __always_inline struct ethhdr *eth_header(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return NULL;
	return eth;
}

/* 0 for a frame addressed to this interface, else the reason it goes to
 * the stack: a multicast or broadcast frame (ARP, neighbour discovery), or
 * one for another host, which the stack drops as the kernel always has. */
static __always_inline int eth_not_for_us(const struct __sk_buff *skb)
{
	switch (skb->pkt_type) {
	case PACKET_HOST:
		return 0;
	case PACKET_OTHERHOST:
		return PASS_OTHER_HOST;
	default:
		return PASS_LINK_LOCAL;
	}
}

/* 0 for an IPv4 or IPv6 frame addressed to this interface, with its
 * EtherType in *proto; else the reason it goes to the stack. */
static __always_inline int eth_ip_for_us(struct __sk_buff *skb, __be16 *proto)
{
	struct ethhdr *eth = eth_header(skb);

	if (!eth)
		return PASS_NOT_IP;
	*proto = eth->h_proto;
	if (*proto != bpf_htons(ETH_P_IP) && *proto != bpf_htons(ETH_P_IPV6))
		return PASS_NOT_IP;
	return eth_not_for_us(skb);
}

/* Writes destination and source MAC in place. */
static __always_inline void eth_rewrite(struct ethhdr *eth, const __u8 *dst, const __u8 *src)
{
	__builtin_memcpy(eth->h_dest, dst, ETH_ALEN);
	__builtin_memcpy(eth->h_source, src, ETH_ALEN);
}

#endif
