// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* sock.bpf.c: cgroup socket programs on the cgroup v2 root, for the
 * node's own connections (kubelet, merled, hostNetwork pods), as Cilium's
 * bpf_sock: a connect() or sendmsg() to a service frontend is sent to a
 * backend before any packet exists, so no per-packet translation happens
 * at all; recvmsg() and getpeername() show the service address again.
 *
 * They act only on sockets of the host's network namespace
 * (merle_lb_config's netns_cookie): pods are balanced per packet by the
 * pod program, and several merle nodes on one machine (the testbeds)
 * each balance their own namespace with their own maps.
 *
 * A backend is picked from the frontend's Maglev table at a random slot:
 * there is no source port yet to hash, and nothing else has to agree with
 * this choice (the flow never reaches another node's balancer). */

#include "lib/common.h"
#include "lib/lb.h"

#define SOCK_STREAM 1
#define SOCK_DGRAM 2

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SOCK_REV_MAX);
	__type(key, struct sock_rev_key);
	__type(value, struct rev_nat_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} merle_sock_rev SEC(".maps");

static __always_inline int sock_in_scope(struct bpf_sock_addr *ctx)
{
	const struct lb_config *c = lb_config();

	return c && c->services && c->netns_cookie && bpf_get_netns_cookie(ctx) == c->netns_cookie;
}

static __always_inline __u8 sock_proto(const struct bpf_sock_addr *ctx)
{
	return ctx->type == SOCK_STREAM ? IPPROTO_TCP : ctx->type == SOCK_DGRAM ? IPPROTO_UDP : 0;
}

/* A backend of `svc` at a random slot of its table. */
static __always_inline const struct backend_info *sock_backend(const struct service_info *svc)
{
	__u32 id = maglev_pick(svc, bpf_get_prandom_u32());
	const struct backend_info *b = bpf_map_lookup_elem(&merle_backends, &id);

	if (!b || b->lb_id != svc->lb_id)
		return NULL;
	return b;
}

/* Remembers, for this socket, that `b` stands for the frontend. */
static __always_inline void sock_remember(struct bpf_sock_addr *ctx, const struct backend_info *b, __u8 family,
					  const __u32 *vip, __u16 vport)
{
	struct sock_rev_key k = { .cookie = bpf_get_socket_cookie(ctx), .port = b->port, .family = family };
	struct rev_nat_info v = { .port = vport, .family = family };

	__builtin_memcpy(k.addr, b->addr, sizeof(k.addr));
	__builtin_memcpy(v.addr, vip, sizeof(v.addr));
	bpf_map_update_elem(&merle_sock_rev, &k, &v, BPF_ANY);
}

static __always_inline void sock4_translate(struct bpf_sock_addr *ctx)
{
	__u32 vip[4] = { ctx->user_ip4, 0, 0, 0 };
	__u16 vport = (__u16)ctx->user_port;
	const struct service_info *svc, *found;
	struct service_info eff;
	const struct backend_info *b;
	__u8 proto = sock_proto(ctx);

	if (!proto || !sock_in_scope(ctx))
		return;
	found = lb_frontend(AF_INET, vip, vport, proto);
	if (!found)
		return;
	lb_from_pods(&eff, found);
	svc = &eff;
	if (!svc->count)
		return;
	b = sock_backend(svc);
	if (!b)
		return;
	sock_remember(ctx, b, AF_INET, vip, vport);
	ctx->user_ip4 = b->addr[0];
	ctx->user_port = (__u32)b->port;
}

/* An IPv4 service asked through a dual-stack IPv6 socket (::ffff:VIP),
 * as Java and others do by default. */
static __always_inline int sock6_mapped(struct bpf_sock_addr *ctx)
{
	__u32 vip[4] = { ctx->user_ip6[3], 0, 0, 0 }, mapped[4];
	__u16 vport = (__u16)ctx->user_port;
	const struct service_info *found;
	struct service_info eff;
	const struct backend_info *b;
	struct sock_rev_key k = { .family = AF_INET6 };
	struct rev_nat_info v = { .family = AF_INET6, .port = vport };
	__u8 proto = sock_proto(ctx);

	found = lb_frontend(AF_INET, vip, vport, proto);
	if (!found)
		return 0;
	lb_from_pods(&eff, found);
	if (!eff.count)
		return 1;
	b = sock_backend(&eff);
	if (!b)
		return 1;
	mapped[0] = 0;
	mapped[1] = 0;
	mapped[2] = bpf_htonl(0xffff);
	mapped[3] = b->addr[0];
	k.cookie = bpf_get_socket_cookie(ctx);
	__builtin_memcpy(k.addr, mapped, sizeof(k.addr));
	k.port = b->port;
	v.addr[0] = 0;
	v.addr[1] = 0;
	v.addr[2] = bpf_htonl(0xffff);
	v.addr[3] = vip[0];
	bpf_map_update_elem(&merle_sock_rev, &k, &v, BPF_ANY);
	ctx->user_ip6[3] = b->addr[0];
	ctx->user_port = (__u32)b->port;
	return 1;
}

static __always_inline void sock6_translate(struct bpf_sock_addr *ctx)
{
	__u32 vip[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };
	__u16 vport = (__u16)ctx->user_port;
	const struct service_info *svc, *found;
	struct service_info eff;
	const struct backend_info *b;
	__u8 proto = sock_proto(ctx);

	if (!proto || !sock_in_scope(ctx))
		return;
	if (vip[0] == 0 && vip[1] == 0 && vip[2] == bpf_htonl(0xffff)) {
		sock6_mapped(ctx);
		return;
	}
	found = lb_frontend(AF_INET6, vip, vport, proto);
	if (!found)
		return;
	lb_from_pods(&eff, found);
	svc = &eff;
	if (!svc->count)
		return;
	b = sock_backend(svc);
	if (!b)
		return;
	sock_remember(ctx, b, AF_INET6, vip, vport);
	ctx->user_ip6[0] = b->addr[0];
	ctx->user_ip6[1] = b->addr[1];
	ctx->user_ip6[2] = b->addr[2];
	ctx->user_ip6[3] = b->addr[3];
	ctx->user_port = (__u32)b->port;
}

/* The service address back where the socket reports its peer. */
static __always_inline void sock4_untranslate(struct bpf_sock_addr *ctx)
{
	struct sock_rev_key k = { .port = (__u16)ctx->user_port, .family = AF_INET };
	const struct rev_nat_info *v;

	if (!sock_in_scope(ctx))
		return;
	k.cookie = bpf_get_socket_cookie(ctx);
	k.addr[0] = ctx->user_ip4;
	v = bpf_map_lookup_elem(&merle_sock_rev, &k);
	if (!v)
		return;
	ctx->user_ip4 = v->addr[0];
	ctx->user_port = (__u32)v->port;
}

static __always_inline void sock6_untranslate(struct bpf_sock_addr *ctx)
{
	struct sock_rev_key k = { .port = (__u16)ctx->user_port, .family = AF_INET6 };
	const struct rev_nat_info *v;

	if (!sock_in_scope(ctx))
		return;
	k.cookie = bpf_get_socket_cookie(ctx);
	k.addr[0] = ctx->user_ip6[0];
	k.addr[1] = ctx->user_ip6[1];
	k.addr[2] = ctx->user_ip6[2];
	k.addr[3] = ctx->user_ip6[3];
	v = bpf_map_lookup_elem(&merle_sock_rev, &k);
	if (!v)
		return;
	ctx->user_ip6[0] = v->addr[0];
	ctx->user_ip6[1] = v->addr[1];
	ctx->user_ip6[2] = v->addr[2];
	ctx->user_ip6[3] = v->addr[3];
	ctx->user_port = (__u32)v->port;
}

/* Every program allows the call (1): they only ever change its address. */

SEC("cgroup/connect4")
int sock4_connect(struct bpf_sock_addr *ctx)
{
	sock4_translate(ctx);
	return 1;
}

SEC("cgroup/sendmsg4")
int sock4_sendmsg(struct bpf_sock_addr *ctx)
{
	sock4_translate(ctx);
	return 1;
}

SEC("cgroup/recvmsg4")
int sock4_recvmsg(struct bpf_sock_addr *ctx)
{
	sock4_untranslate(ctx);
	return 1;
}

SEC("cgroup/getpeername4")
int sock4_getpeername(struct bpf_sock_addr *ctx)
{
	sock4_untranslate(ctx);
	return 1;
}

SEC("cgroup/connect6")
int sock6_connect(struct bpf_sock_addr *ctx)
{
	sock6_translate(ctx);
	return 1;
}

SEC("cgroup/sendmsg6")
int sock6_sendmsg(struct bpf_sock_addr *ctx)
{
	sock6_translate(ctx);
	return 1;
}

SEC("cgroup/recvmsg6")
int sock6_recvmsg(struct bpf_sock_addr *ctx)
{
	sock6_untranslate(ctx);
	return 1;
}

SEC("cgroup/getpeername6")
int sock6_getpeername(struct bpf_sock_addr *ctx)
{
	sock6_untranslate(ctx);
	return 1;
}

char __license[] SEC("license") = "Dual BSD/GPL";
