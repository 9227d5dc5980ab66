// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Built for the host by build.rs: prints the layout of every type in
 * lib/types.h and the value of every reason in lib/drop.h, one per line,
 * for the test in src/types.rs that holds the Rust mirror to them. */
#include <stddef.h>
#include <stdio.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include "lib/types.h"
#include "lib/drop.h"

#define SIZE(t) printf("size %s %zu\n", #t, sizeof(struct t))
#define FIELD(t, f) printf("offset %s.%s %zu\n", #t, #f, offsetof(struct t, f))
#define REASON(r) printf("reason %s %d\n", #r, r)
#define CONST(c) printf("const %s %d\n", #c, c)

int main(void)
{
	SIZE(endpoint_key);
	FIELD(endpoint_key, family);
	FIELD(endpoint_key, addr);
	SIZE(pod_iface);
	FIELD(pod_iface, ifindex);
	FIELD(pod_iface, flags);
	FIELD(pod_iface, v4);
	FIELD(pod_iface, v6);
	SIZE(endpoint_info);
	FIELD(endpoint_info, ifindex);
	FIELD(endpoint_info, pod_mac);
	FIELD(endpoint_info, node_mac);
	FIELD(endpoint_info, flags);
	SIZE(net_key4);
	FIELD(net_key4, prefixlen);
	FIELD(net_key4, addr);
	SIZE(net_key6);
	FIELD(net_key6, prefixlen);
	FIELD(net_key6, addr);
	SIZE(net_info);
	FIELD(net_info, flags);
	SIZE(metrics_value);
	FIELD(metrics_value, packets);
	FIELD(metrics_value, bytes);
	SIZE(service_key);
	FIELD(service_key, addr);
	FIELD(service_key, port);
	FIELD(service_key, proto);
	FIELD(service_key, family);
	SIZE(service_info);
	FIELD(service_info, lb_id);
	FIELD(service_info, rev_nat);
	FIELD(service_info, count);
	FIELD(service_info, flags);
	FIELD(service_info, maglev_m);
	FIELD(service_info, cluster_lb_id);
	FIELD(service_info, cluster_count);
	SIZE(backend_info);
	FIELD(backend_info, addr);
	FIELD(backend_info, port);
	FIELD(backend_info, family);
	FIELD(backend_info, lb_id);
	SIZE(rev_nat_info);
	FIELD(rev_nat_info, addr);
	FIELD(rev_nat_info, port);
	FIELD(rev_nat_info, family);
	SIZE(maglev_key);
	FIELD(maglev_key, chunk);
	SIZE(maglev_chunk);
	SIZE(ct_key);
	FIELD(ct_key, saddr);
	FIELD(ct_key, daddr);
	FIELD(ct_key, sport);
	FIELD(ct_key, dport);
	FIELD(ct_key, proto);
	FIELD(ct_key, family);
	FIELD(ct_key, dir);
	SIZE(ct_entry);
	FIELD(ct_entry, backend_id);
	FIELD(ct_entry, rev_nat);
	FIELD(ct_entry, lb_id);
	FIELD(ct_entry, flags);
	FIELD(ct_entry, addr);
	FIELD(ct_entry, port);
	FIELD(ct_entry, seen);
	SIZE(lb_config);
	FIELD(lb_config, services);
	FIELD(lb_config, flags);
	FIELD(lb_config, addr4);
	FIELD(lb_config, addr6);
	FIELD(lb_config, netns_cookie);
	FIELD(lb_config, next_lb);
	FIELD(lb_config, next_backend);
	FIELD(lb_config, next_rev_nat);
	FIELD(lb_config, syncing);
	SIZE(sock_rev_key);
	FIELD(sock_rev_key, cookie);
	FIELD(sock_rev_key, addr);
	FIELD(sock_rev_key, port);
	FIELD(sock_rev_key, family);
	CONST(SOCK_REV_MAX);
	SIZE(dsr_opt_v4);
	SIZE(dsr_opt_v6);
	CONST(CT_F_DSR);
	CONST(CT_F_SNAT);
	CONST(CT_F_HAIRPIN);
	CONST(CT_F_CLOSING);
	CONST(CT_TICK_SHIFT);
	CONST(CT_LIFE_TCP);
	CONST(CT_LIFE_CLOSING);
	CONST(CT_LIFE_UDP);
	printf("const HAIRPIN_V4 %lld\n", (long long)HAIRPIN_V4);
	CONST(LB_F_ADDR4);
	CONST(LB_F_ADDR6);
	CONST(DSR_IPV4_OPT_TYPE);
	CONST(DSR_IPV4_OPT_LEN);
	CONST(DSR_IPV6_OPT_TYPE);
	CONST(DSR_IPV6_OPT_LEN);
	CONST(DSR_IPV6_EXT_LEN);
	CONST(SVC_F_CLUSTER_IP);
	CONST(SVC_F_NODE_PORT);
	CONST(SVC_F_EXTERNAL);
	CONST(SVC_F_LOCAL);
	CONST(SVC_F_DSR);
	CONST(MAGLEV_CHUNK);
	CONST(MAGLEV_M_MAX);
	CONST(MAGLEV_CHUNKS_MAX);
	CONST(CT_SERVICE);
	CONST(CT_REPLY);
	CONST(SERVICES_MAX);
	CONST(BACKENDS_MAX);
	CONST(CT_MAX);
	CONST(HOOK_POD_INGRESS);
	CONST(HOOK_NODE_INGRESS);
	CONST(HOOKS_MAX);
	CONST(REASONS_MAX);
	CONST(METRICS_MAX);
	CONST(ENDPOINTS_MAX);
	CONST(POD_IFACES_MAX);
	CONST(POD_IFACE_F_V4);
	CONST(POD_IFACE_F_V6);
	CONST(POD_IFACE_F_NAT_OUTGOING_V4);
	CONST(POD_IFACE_F_NAT_OUTGOING_V6);
	CONST(NETS_MAX);
	CONST(NET_F_POOL);
	CONST(NET_F_NAT_OUTGOING);
	CONST(NET_F_SERVICE);
	CONST(NET_F_NODE);
	CONST(ENDPOINT_F_NAT_OUTGOING);
	REASON(REASON_REDIRECT_PEER);
	REASON(REASON_REDIRECT_FIB);
	REASON(REASON_REDIRECT_NEIGH);
	REASON(REASON_ICMP_TOO_BIG);
	REASON(PASS_NOT_IP);
	REASON(PASS_LOCAL);
	REASON(PASS_TTL);
	REASON(PASS_FRAGMENT);
	REASON(PASS_IP_OPTIONS);
	REASON(PASS_NAT_OUTGOING);
	REASON(PASS_FIB);
	REASON(PASS_NO_ENDPOINT);
	REASON(PASS_LINK_LOCAL);
	REASON(PASS_HAIRPIN);
	REASON(PASS_UNKNOWN_SOURCE);
	REASON(PASS_OTHER_HOST);
	REASON(DROP_INVALID_IPV4);
	REASON(DROP_INVALID_IPV6);
	REASON(DROP_SOURCE_SPOOFED);
	REASON(DROP_FIB_BLACKHOLE);
	REASON(DROP_REDIRECT);
	REASON(DROP_NO_BACKEND);
	REASON(DROP_NAT);
	REASON(DROP_SERVICE_LOOPBACK);
	REASON(DROP_DSR);
	REASON(DROP_NAT_NO_PORT);
	REASON(DROP_ICMP);
	return 0;
}
