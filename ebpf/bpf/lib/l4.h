/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* TCP and UDP: the ports, and rewriting an address and a port with the
 * IPv4 header checksum and the L4 checksum (its pseudo-header part for
 * the address) kept right, through the kernel's csum helpers, which also
 * keep a CHECKSUM_PARTIAL or CHECKSUM_COMPLETE skb consistent. A UDP
 * datagram over IPv4 without a checksum (0) keeps none. The helpers move
 * the packet's data: every pointer into it must be loaded again after. */
#ifndef MERLE_L4_H
#define MERLE_L4_H

#include <stddef.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include "common.h"
#include "drop.h"

#define L4_OFF_V4 (ETH_HLEN + sizeof(struct iphdr))
#define L4_OFF_V6 (ETH_HLEN + sizeof(struct ipv6hdr))
#define L4_SPORT 0
#define L4_DPORT 2

struct l4_ports {
	__u16 sport; /* network order */
	__u16 dport;
};

static __always_inline int l4_is_tcp_udp(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP;
}

/* The ports of a TCP or UDP header at `off` (a constant), or -1 when the
 * packet ends before them. */
static __always_inline int l4_ports(const struct __sk_buff *skb, __u32 off, struct l4_ports *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct l4_ports *h = data + off;

	if ((void *)(h + 1) > end)
		return -1;
	*p = *h;
	return 0;
}

static __always_inline __u32 l4_csum_at(__u32 off, __u8 proto)
{
	return off + (proto == IPPROTO_TCP ? 16 : 6);
}

static __always_inline __u64 l4_csum_flags(__u8 proto, int v6)
{
	/* UDP: a checksum of 0 stays 0 (none, over IPv4), and one that comes
	 * out 0 is written 0xffff (over IPv6 a 0 would be dropped). */
	(void)v6;
	return proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

#define L4_TCP_FIN 0x01
#define L4_TCP_SYN 0x02
#define L4_TCP_RST 0x04
#define L4_TCP_ACK 0x10

/* The flags of the TCP segment at `off`; 0 for any other protocol. */
static __always_inline __u8 tcp_flags(const struct __sk_buff *skb, __u32 off, __u8 proto)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u8 *flags = data + off + 13;

	if (proto != IPPROTO_TCP || (void *)(flags + 1) > end)
		return 0;
	return *flags;
}

/* A SYN without ACK: a new connection, even on a tuple conntrack holds. */
static __always_inline int tcp_is_syn(__u8 flags)
{
	return (flags & (L4_TCP_SYN | L4_TCP_ACK)) == L4_TCP_SYN;
}

/* A FIN or RST: the connection is ending. */
static __always_inline int tcp_is_end(__u8 flags)
{
	return flags & (L4_TCP_FIN | L4_TCP_RST);
}

/* Rewrites the port at `port_at` (L4_SPORT or L4_DPORT) of the TCP/UDP
 * header at `off`. */
static __always_inline int l4_port_rewrite(struct __sk_buff *skb, __u32 off, __u8 proto, int v6, __u32 port_at,
					   __u16 old_port, __u16 new_port)
{
	if (old_port == new_port)
		return 0;
	if (bpf_l4_csum_replace(skb, l4_csum_at(off, proto), old_port, new_port, l4_csum_flags(proto, v6) | 2) < 0)
		return -DROP_NAT;
	if (bpf_skb_store_bytes(skb, off + port_at, &new_port, 2, 0) < 0)
		return -DROP_NAT;
	return 0;
}

/* Rewrites the IPv4 source or destination (`addr_at`, an offsetof in
 * struct iphdr) and a port of a TCP or UDP packet without options. */
static __always_inline int nat_v4(struct __sk_buff *skb, __u8 proto, __u32 addr_at, __u32 old_addr, __u32 new_addr,
				  __u32 port_at, __u16 old_port, __u16 new_port)
{
	if (old_addr != new_addr) {
		if (bpf_l4_csum_replace(skb, l4_csum_at(L4_OFF_V4, proto), old_addr, new_addr,
					BPF_F_PSEUDO_HDR | l4_csum_flags(proto, 0) | 4) < 0)
			return -DROP_NAT;
		if (bpf_l3_csum_replace(skb, ETH_HLEN + offsetof(struct iphdr, check), old_addr, new_addr, 4) < 0)
			return -DROP_NAT;
		if (bpf_skb_store_bytes(skb, ETH_HLEN + addr_at, &new_addr, 4, 0) < 0)
			return -DROP_NAT;
	}
	return l4_port_rewrite(skb, L4_OFF_V4, proto, 0, port_at, old_port, new_port);
}

/* The same for IPv6 (no header checksum; the pseudo-header sum changes by
 * the difference of the two addresses). */
static __always_inline int nat_v6(struct __sk_buff *skb, __u8 proto, __u32 addr_at, const __u32 *old_addr,
				  const __u32 *new_addr, __u32 port_at, __u16 old_port, __u16 new_port)
{
	__u32 from[4], to[4];
	__s64 diff;

	__builtin_memcpy(from, old_addr, sizeof(from));
	__builtin_memcpy(to, new_addr, sizeof(to));
	if (from[0] != to[0] || from[1] != to[1] || from[2] != to[2] || from[3] != to[3]) {
		diff = bpf_csum_diff(from, sizeof(from), to, sizeof(to), 0);
		if (diff < 0)
			return -DROP_NAT;
		if (bpf_l4_csum_replace(skb, l4_csum_at(L4_OFF_V6, proto), 0, (__u32)diff, BPF_F_PSEUDO_HDR) < 0)
			return -DROP_NAT;
		if (bpf_skb_store_bytes(skb, ETH_HLEN + addr_at, to, sizeof(to), 0) < 0)
			return -DROP_NAT;
	}
	return l4_port_rewrite(skb, L4_OFF_V6, proto, 1, port_at, old_port, new_port);
}

#endif
