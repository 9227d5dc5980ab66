/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Why a packet went where it went: every verdict of merle's programs has a
 * named reason, counted per CPU in merle_metrics (packets and bytes), so an
 * operator sees with `merlectl dataplane` which path traffic takes and why
 * a packet died. ebpf/src/types.rs has the same names and numbers. */
#ifndef MERLE_DROP_H
#define MERLE_DROP_H

#include <linux/pkt_cls.h>

enum reason {
	/* Forwarded by the program. */
	REASON_REDIRECT_PEER = 1,   /* bpf_redirect_peer into a local pod */
	REASON_REDIRECT_FIB = 2,    /* bpf_fib_lookup, then bpf_redirect */
	REASON_REDIRECT_NEIGH = 3,  /* bpf_fib_lookup said NO_NEIGH: bpf_redirect_neigh */
	REASON_ICMP_TOO_BIG = 4,    /* the DSR option would exceed the MTU: Frag Needed / Packet Too Big sent back */

	/* Handed to the kernel's stack, which knows what to do. */
	PASS_NOT_IP = 8,            /* ARP, LLDP, ... */
	PASS_LOCAL = 9,             /* for the node itself (FIB: not forwarded) */
	PASS_TTL = 10,              /* TTL / hop limit would expire: ICMP by the kernel */
	PASS_FRAGMENT = 11,         /* IPv4 or IPv6 fragment */
	PASS_IP_OPTIONS = 12,       /* IPv4 header with options */
	PASS_NAT_OUTGOING = 13,     /* leaves the cluster from a nat_outgoing pool */
	PASS_FIB = 14,              /* FIB lookup: unreachable, prohibit, frag needed, ... */
	PASS_NO_ENDPOINT = 15,      /* arriving, not for a pod of this node */
	PASS_LINK_LOCAL = 16,       /* link-local or multicast destination (ARP/ND, DHCP) */
	PASS_HAIRPIN = 17,          /* the way out is the way in */
	PASS_UNKNOWN_SOURCE = 18,   /* from a source that is not a pod of this node */
	PASS_OTHER_HOST = 19,       /* not addressed to this node's MAC: the stack drops it */

	/* Dropped. */
	DROP_INVALID_IPV4 = 32,     /* truncated or malformed IPv4 header */
	DROP_INVALID_IPV6 = 33,     /* truncated IPv6 header */
	DROP_SOURCE_SPOOFED = 34,   /* source address of another pod's veth */
	DROP_FIB_BLACKHOLE = 37,    /* blackhole route, as the kernel would */
	DROP_REDIRECT = 38,         /* the redirect helper refused */
	DROP_NO_BACKEND = 39,       /* to a service without a backend (Cilium: no service backend) */
	DROP_NAT = 40,              /* a service translation's rewrite failed */
	DROP_SERVICE_LOOPBACK = 41, /* a translated packet back into the pod it came from, not from the hairpin source */
	DROP_DSR = 42,              /* the DSR option could not be inserted */
	DROP_NAT_NO_PORT = 43,      /* SNAT found no free source port for the flow */
	DROP_ICMP = 44,             /* the ICMP error could not be built */
};

/* What an internal function's result means for tc: a redirect reason
 * comes with TC_ACT_REDIRECT, a pass reason with TC_ACT_OK, a negative
 * value (-DROP_*) with TC_ACT_SHOT. */
static inline __attribute__((always_inline)) int reason_verdict(int r)
{
	if (r < 0)
		return TC_ACT_SHOT;
	return r < PASS_NOT_IP ? TC_ACT_REDIRECT : TC_ACT_OK;
}

#endif
