/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The keys and values of every map merle's programs share with user space.
 * ebpf/src/types.rs mirrors each of them with a #[repr(C)] type, and a test
 * compares the two layouts (size and every field's offset) as the compiler
 * of each side sees them. Change both or neither. */
#ifndef MERLE_TYPES_H
#define MERLE_TYPES_H

#include <linux/types.h>

/* merle_endpoints: a pod address on this node. The key holds IPv4 in
 * addr[0] (network order) and zeroes in the rest. */
struct endpoint_key {
	__u8 family;    /* AF_INET or AF_INET6 */
	__u8 pad[3];
	__u32 addr[4];  /* network order */
};

/* The pod's address is from a pool with nat_outgoing: its traffic to
 * outside every cluster range goes to the stack to be masqueraded. Kept
 * in the entry so that pods of other pools pay no lookup for it. */
#define ENDPOINT_F_NAT_OUTGOING (1U << 0)

struct endpoint_info {
	__u32 ifindex;      /* the host end of the pod's veth */
	__u8 pod_mac[6];    /* the pod end's MAC: destination into the pod */
	__u8 node_mac[6];   /* the host end's MAC: source into the pod */
	__u32 flags;        /* ENDPOINT_F_* */
	__u32 pad;
};

/* merle_pod_ifaces: an array of pod veths at slot ifindex % POD_IFACES_MAX,
 * so the pod program checks a packet's source with one inlined load
 * instead of a hash lookup. An entry is the veth's only when its ifindex
 * matches; for each family it names one endpoint of that veth (the
 * lowest address). A source it does not name, a veth without an entry or
 * one whose slot another veth holds, is looked up in merle_endpoints as
 * before, so the entry only ever speeds up the check. An entry never
 * names an address that is not an endpoint of its veth. */
#define POD_IFACE_F_V4               (1U << 0) /* v4 names an endpoint */
#define POD_IFACE_F_V6               (1U << 1) /* v6 names an endpoint */
#define POD_IFACE_F_NAT_OUTGOING_V4  (1U << 2) /* ...of a nat_outgoing pool */
#define POD_IFACE_F_NAT_OUTGOING_V6  (1U << 3)

struct pod_iface {
	__u32 ifindex;  /* the veth the entry is for */
	__u32 flags;    /* POD_IFACE_F_* */
	__u32 v4;       /* network order */
	__u32 v6[4];    /* network order */
	__u32 pad;
};

/* merle_nets4 / merle_nets6: the cluster's address ranges, longest
 * prefix match. A destination inside none of them is "outside the
 * cluster" for outgoing NAT. */
struct net_key4 {
	__u32 prefixlen;
	__u32 addr;     /* network order */
};

struct net_key6 {
	__u32 prefixlen;
	__u32 addr[4];  /* network order */
};

#define NET_F_POOL          (1U << 0) /* an IP pool */
#define NET_F_NAT_OUTGOING  (1U << 1) /* an IP pool with nat_outgoing */
#define NET_F_SERVICE       (1U << 2) /* a service range */
#define NET_F_NODE          (1U << 3) /* a node subnet */

struct net_info {
	__u32 flags;    /* NET_F_* */
};

/* merle_metrics: a per-CPU array indexed by METRIC_INDEX(hook, reason),
 * with the reasons of lib/drop.h. */
struct metrics_value {
	__u64 packets;
	__u64 bytes;
};

#define HOOK_POD_INGRESS  0 /* host end of a pod's veth: packets leaving the pod */
#define HOOK_NODE_INGRESS 1 /* an uplink or vxlan.merle: packets arriving */
#define HOOKS_MAX         4
#define REASONS_MAX       64
#define METRICS_MAX       (HOOKS_MAX * REASONS_MAX)
#define METRIC_INDEX(hook, reason) ((hook) * REASONS_MAX + (reason))

#define ENDPOINTS_MAX 65536
#define POD_IFACES_MAX 65536
#define NETS_MAX 1024

/* Services (lib/lb.h), in the style of Cilium's lb4/lb6 maps.
 *
 * merle_services: a frontend (VIP or node address, port, protocol) to the
 * table of backends it uses. A ClusterIP and the NodePort of the same
 * service may use different tables: with externalTrafficPolicy Local the
 * outside frontends use a table of this node's backends only. */
struct service_key {
	__u32 addr[4];  /* network order; IPv4 in addr[0], zeroes after */
	__u16 port;     /* network order */
	__u8 proto;     /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family;    /* AF_INET or AF_INET6 */
};

#define SVC_F_CLUSTER_IP   (1U << 0) /* a ClusterIP: from pods and the node */
#define SVC_F_NODE_PORT    (1U << 1) /* a NodePort on one of this node's addresses */
#define SVC_F_EXTERNAL     (1U << 2) /* an external or load-balancer IP */
#define SVC_F_LOCAL        (1U << 3) /* externalTrafficPolicy Local */
#define SVC_F_DSR          (1U << 4) /* remote backends by DSR (else SNAT) */

struct service_info {
	__u32 lb_id;    /* the table: merle_maglev key, merle_backends' lb_id */
	__u32 rev_nat;  /* merle_rev_nat: the address replies come from */
	__u32 count;    /* backends in the table; 0: none to send to */
	__u32 flags;    /* SVC_F_* */
	__u32 maglev_m; /* the table's size, a prime */
	/* SVC_F_LOCAL: the service's table of every backend, which its
	 * traffic from pods uses (Local applies to outside traffic only). */
	__u32 cluster_lb_id;
	__u32 cluster_count;
};

/* merle_backends: backend id to where it is. An id belongs to one table
 * (lb_id): removing a backend from a service removes its id, and the
 * flows that conntrack kept on it are balanced again. */
struct backend_info {
	__u32 addr[4];  /* network order */
	__u16 port;     /* network order */
	__u8 family;
	__u8 pad;
	__u32 lb_id;
};

/* merle_maglev: the Maglev lookup tables the Rust side built (merle-lb),
 * in chunks of MAGLEV_CHUNK slots: slot `hash % maglev_m` of table lb_id
 * is entry slot % MAGLEV_CHUNK of chunk slot / MAGLEV_CHUNK, a backend id.
 * The size is configured (a prime, 16381 by default); a table takes
 * ceil(m / MAGLEV_CHUNK) chunks, so memory follows the size. */
#define MAGLEV_CHUNK 1024
#define MAGLEV_M_MAX 131071
#define MAGLEV_CHUNKS_MAX (1U << 20)

struct maglev_key {
	__u32 lb_id;
	__u32 chunk;
};

struct maglev_chunk {
	__u32 backend[MAGLEV_CHUNK];
};

/* merle_rev_nat: what replies of a translated flow are rewritten to. */
struct rev_nat_info {
	__u32 addr[4];  /* network order */
	__u16 port;     /* network order */
	__u8 family;
	__u8 pad;
};

/* merle_ct: an LRU conntrack. CT_SERVICE entries are keyed by the flow as
 * the client sent it (client, frontend) and keep it on its backend;
 * CT_REPLY entries are keyed by the reply as the backend sends it
 * (backend, client) and name the frontend to rewrite its source to. */
#define CT_SERVICE 1
#define CT_REPLY   2

struct ct_key {
	__u32 saddr[4];
	__u32 daddr[4];
	__u16 sport;    /* network order */
	__u16 dport;
	__u8 proto;
	__u8 family;
	__u8 dir;       /* CT_SERVICE or CT_REPLY */
	__u8 pad;
};

#define CT_F_DSR   (1U << 0) /* CT_REPLY: a DSR reply, the VIP in addr/port */
#define CT_F_SNAT  (1U << 1) /* CT_REPLY: a SNAT reply, the client in addr/port */
#define CT_F_HAIRPIN (1U << 2) /* CT_REPLY: a pod's own flow to a service it backs:
			      * the reply goes to the client in addr/port */
#define CT_F_CLOSING (1U << 3) /* CT_REPLY: a FIN or RST was seen */

/* How long a CT_REPLY entry lives without a packet, in ticks of 2^30 ns
 * (about a second), as Cilium's defaults: TCP 6 h, 10 s once closing,
 * UDP 60 s. An expired entry translates nothing, and its SNAT port is
 * free for another flow. */
#define CT_TICK_SHIFT 30
#define CT_LIFE_TCP 20116      /* 6 h */
#define CT_LIFE_CLOSING 10
#define CT_LIFE_UDP 56         /* 60 s */

/* The source a pod's flow to itself through a service takes (Cilium's
 * IPV4_LOOPBACK): a pod drops a packet from its own address, and this one
 * routes back to the host's end of its veth. 169.254.42.1, network order
 * as it sits in memory. */
#define HAIRPIN_V4 ((__u32)(169 | (254 << 8) | (42 << 16) | (1U << 24)))
/* IPv6's: 100::42:1, from the discard-only prefix (RFC 6666), which no
 * host has and every router drops. Its first and last words, network
 * order as they sit in memory; the middle two are 0. */
#define HAIRPIN_V6_W0 ((__u32)1)
#define HAIRPIN_V6_W3 ((__u32)((0x42 << 8) | (1U << 24)))

struct ct_entry {
	__u32 backend_id;  /* CT_SERVICE: the backend the flow is on */
	__u32 rev_nat;     /* merle_rev_nat index of the frontend */
	__u32 lb_id;       /* CT_SERVICE: the table it was chosen from */
	__u32 flags;       /* CT_F_* */
	__u32 addr[4];     /* CT_REPLY: DSR: the VIP; SNAT: the client.
			    * CT_SERVICE with SNAT: the node address used */
	__u16 port;        /* the port of addr (network order) */
	__u16 pad;
	__u32 seen;        /* CT_REPLY: the tick of the last packet */
};

/* merle_lb_config: one entry; a program skips every service lookup while
 * no service is programmed. */
struct lb_config {
	__u32 services;    /* frontends in merle_services */
	__u32 flags;       /* LB_F_* */
	__u32 addr4;       /* this node's IPv4 address: the SNAT source */
	__u32 addr6[4];    /* its IPv6 address */
	__u32 pad;
	__u64 netns_cookie; /* the host's network namespace: where the socket
			     * programs balance (0: nowhere) */
	/* The next ids merled hands out: an id is never given twice, so a
	 * conntrack entry never names a newer table, backend or frontend. */
	__u32 next_lb;
	__u32 next_backend;
	__u32 next_rev_nat;
	__u32 syncing;     /* merled is writing the maps: a sync that finds
			    * this set (one was cut short) rebuilds every table */
};

/* merle_sock_rev: what a socket the socket programs translated was meant
 * to reach, so that recvmsg and getpeername show the service address. */
struct sock_rev_key {
	__u64 cookie;    /* the socket's cookie */
	__u32 addr[4];   /* the backend, network order */
	__u16 port;      /* network order */
	__u8 family;
	__u8 pad[5];
};

#define SOCK_REV_MAX 65536

#define LB_F_ADDR4 (1U << 0) /* addr4 is set */
#define LB_F_ADDR6 (1U << 1) /* addr6 is set */

/* The DSR option (Cilium's): IPv4 option 0x9a (copied, number 26), 8
 * bytes; IPv6 destination option 0x1B in a 24-byte header. */
#define DSR_IPV4_OPT_TYPE 0x9a
#define DSR_IPV4_OPT_LEN  8
#define DSR_IPV6_OPT_TYPE 0x1B
#define DSR_IPV6_OPT_LEN  20
#define DSR_IPV6_EXT_LEN  24

struct dsr_opt_v4 {
	__u8 type;
	__u8 len;
	__u16 port;     /* network order */
	__u32 addr;     /* network order */
};

struct dsr_opt_v6 {
	__u8 nexthdr;
	__u8 hdrlen;    /* (24 / 8) - 1 */
	__u8 type;
	__u8 len;
	__u32 addr[4];
	__u16 port;
	__u16 pad;      /* two Pad1 options */
};

#define SERVICES_MAX  65536
#define BACKENDS_MAX  262144
#define CT_MAX        262144

#endif
