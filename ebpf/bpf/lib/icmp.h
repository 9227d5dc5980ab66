/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* ICMP errors a program sends itself: Fragmentation Needed (RFC 792,
 * RFC 1191) and Packet Too Big (RFC 4443) for a packet the DSR option
 * would push over the path's MTU. The packet is turned into the error in
 * place (MACs swapped, addressed back to its sender, from the address it
 * was sent to, carrying its first bytes) and sent back out of the
 * interface it came in on. */
#ifndef MERLE_ICMP_H
#define MERLE_ICMP_H

#include "common.h"
#include "drop.h"
#include "ipv4.h"
#include "ipv6.h"

#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif
#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4
#define ICMPV6_PKT_TOOBIG 2

/* The 8 bytes of an ICMP error header, for both families (the uapi
 * linux/icmp.h pulls in libc's socket headers, which a BPF build lacks). */
struct icmp_err {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u16 unused;   /* IPv4: 0; IPv6: the high half of the MTU */
	__u16 mtu;      /* network order */
};

/* The RFC 1071 sum of `len` bytes (a constant, even) at `p`, unfolded. */
static __always_inline __u32 sum16(const void *p, __u32 len)
{
	const __u16 *w = p;
	__u32 s = 0;

#pragma unroll
	for (__u32 i = 0; i < len / 2; i++)
		s += w[i];
	return s;
}

static __always_inline __u16 fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

#define ICMP4_QUOTE 28 /* the IPv4 header and 8 bytes of what follows */

struct icmp4_frame {
	struct ethhdr eth;
	struct iphdr ip;
	struct icmp_err icmp;
	__u8 quote[ICMP4_QUOTE];
} __attribute__((packed));

/* Turns the IPv4 packet into an ICMP Fragmentation Needed with next-hop
 * MTU `mtu` and sends it back. */
static __noinline int icmp4_too_big(struct __sk_buff *skb, __u32 mtu)
{
	struct icmp4_frame f = {};
	struct ethhdr eth;
	struct iphdr ip;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0 || bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0 ||
	    bpf_skb_load_bytes(skb, ETH_HLEN, f.quote, sizeof(f.quote)) < 0)
		return -DROP_ICMP;
	__builtin_memcpy(f.eth.h_dest, eth.h_source, ETH_ALEN);
	__builtin_memcpy(f.eth.h_source, eth.h_dest, ETH_ALEN);
	f.eth.h_proto = bpf_htons(ETH_P_IP);
	f.ip.version = 4;
	f.ip.ihl = 5;
	f.ip.tot_len = bpf_htons(sizeof(f) - ETH_HLEN);
	f.ip.ttl = 64;
	f.ip.protocol = IPPROTO_ICMP;
	f.ip.saddr = ip.daddr;
	f.ip.daddr = ip.saddr;
	f.ip.check = ipv4_csum(&f.ip, sizeof(f.ip));
	f.icmp.type = ICMP_DEST_UNREACH;
	f.icmp.code = ICMP_FRAG_NEEDED;
	f.icmp.mtu = bpf_htons(mtu);
	f.icmp.checksum = fold(sum16(&f.icmp, sizeof(f.icmp) + sizeof(f.quote)));
	if (bpf_skb_change_tail(skb, sizeof(f), 0) < 0 || bpf_skb_store_bytes(skb, 0, &f, sizeof(f), 0) < 0)
		return -DROP_ICMP;
	note_target(skb, skb->ifindex);
	if (bpf_redirect(skb->ifindex, 0) != TC_ACT_REDIRECT)
		return -DROP_REDIRECT;
	return REASON_ICMP_TOO_BIG;
}

#define ICMP6_QUOTE 48 /* the IPv6 header and 8 bytes of what follows */

struct icmp6_frame {
	struct ethhdr eth;
	struct ipv6hdr ip6;
	struct icmp_err icmp6;
	__u8 quote[ICMP6_QUOTE];
} __attribute__((packed));

/* Turns the IPv6 packet into an ICMPv6 Packet Too Big with MTU `mtu`
 * and sends it back. */
static __noinline int icmp6_too_big(struct __sk_buff *skb, __u32 mtu)
{
	struct icmp6_frame f = {};
	struct ethhdr eth;
	struct ipv6hdr ip6;
	__u32 s;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0 || bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)) < 0 ||
	    bpf_skb_load_bytes(skb, ETH_HLEN, f.quote, sizeof(f.quote)) < 0)
		return -DROP_ICMP;
	__builtin_memcpy(f.eth.h_dest, eth.h_source, ETH_ALEN);
	__builtin_memcpy(f.eth.h_source, eth.h_dest, ETH_ALEN);
	f.eth.h_proto = bpf_htons(ETH_P_IPV6);
	f.ip6.version = 6;
	f.ip6.payload_len = bpf_htons(sizeof(f.icmp6) + sizeof(f.quote));
	f.ip6.nexthdr = IPPROTO_ICMPV6;
	f.ip6.hop_limit = 64;
	f.ip6.saddr = ip6.daddr;
	f.ip6.daddr = ip6.saddr;
	f.icmp6.type = ICMPV6_PKT_TOOBIG;
	f.icmp6.unused = bpf_htons(mtu >> 16);
	f.icmp6.mtu = bpf_htons(mtu & 0xffff);
	/* The pseudo-header: both addresses, the length, the next header. */
	s = sum16(&f.ip6.saddr, 32) + bpf_htons(sizeof(f.icmp6) + sizeof(f.quote)) + bpf_htons(IPPROTO_ICMPV6);
	s += sum16(&f.icmp6, sizeof(f.icmp6) + sizeof(f.quote));
	f.icmp6.checksum = fold(s);
	if (bpf_skb_change_tail(skb, sizeof(f), 0) < 0 || bpf_skb_store_bytes(skb, 0, &f, sizeof(f), 0) < 0)
		return -DROP_ICMP;
	note_target(skb, skb->ifindex);
	if (bpf_redirect(skb->ifindex, 0) != TC_ACT_REDIRECT)
		return -DROP_REDIRECT;
	return REASON_ICMP_TOO_BIG;
}

#endif
