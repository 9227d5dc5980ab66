// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* A program the verifier must reject (it reads the packet without a bounds
 * check): the loader test proves that a rejection names the program, shows
 * the verifier's log and leaves nothing pinned or attached. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("classifier")
int reject(struct __sk_buff *skb)
{
	unsigned char *data = (unsigned char *)(long)skb->data;

	return data[20] == 1 ? TC_ACT_SHOT : TC_ACT_OK;
}

char __license[] SEC("license") = "Dual BSD/GPL";
