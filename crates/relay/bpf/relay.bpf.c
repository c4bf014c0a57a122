// SPDX-License-Identifier: GPL-2.0-only
//
// The RTP relay in the kernel (crates/relay/src/kernel.rs): a tc ingress program
// on `lo` that takes the packets of a natively bridged call's far end, rewrites them as the
// relay thread would (crates/media's RelayLeg, and the RtpSession's receive statistics) and
// lets the stack deliver them to the other call's far end, as if sent from the other call's
// socket. The relay threads decide which packets are ours (the `legs` map, written only by
// them to hand a leg over or take it back); anything it has not described exactly goes on up to
// its socket (TCX_NEXT), where the relay thread takes it as before.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// enum tcx_action_base (Linux 6.6; Debian 12's headers are older).
#define TCX_NEXT -1
#define TCX_PASS 0
#define TCX_DROP 2

#define IP_OFF ETH_HLEN
#define UDP_OFF (IP_OFF + sizeof(struct iphdr))
#define RTP_OFF (UDP_OFF + sizeof(struct udphdr))
#define IP_CSUM_OFF (IP_OFF + offsetof(struct iphdr, check))
#define UDP_CSUM_OFF (UDP_OFF + offsetof(struct udphdr, check))

// A far end's packets to one of our sockets. Network byte order. `daddr` is 0 for a socket
// bound to every address.
struct leg_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
};

// Must match `Leg` in kernel.rs, field for field.
struct leg {
	// Written by the relay thread when it hands the leg over; only read here.
	__u32 out_saddr; // the other call's socket (network order)
	__u32 out_daddr; // the other call's far end
	__u16 out_sport;
	__u16 out_dport;
	__u32 in_ssrc; // the stream relayed; another one goes up to the relay thread
	__u32 out_ssrc;
	__u32 ts_offset;
	__u16 seq_offset;
	__u16 pad0;
	__u32 clock_rate; // of the incoming codec, for the jitter
	__u8 pt_map[128]; // incoming payload type -> outgoing; 0xff: up to the relay thread
	// Kept here, read by the relay thread.
	__u64 packets;
	__u64 octets; // RTP payload octets, as the session counts them
	__u64 relayed_octets; // whole packets, as the relay leg counts them
	__u64 last_rx_ns; // CLOCK_MONOTONIC
	__s64 last_transit;
	__u32 jitter_q4;
	__u32 max_seq; // extended: cycles in the high half
	__u32 last_ts; // the last packet sent on
	__u32 last_step;
	__u16 last_seq;
	__u8 have_last;
	__u8 have_transit;
	__u32 pad1;
};

// Entries are allocated as legs are handed over (a preallocated map of this size would hold
// ~20 MB of kernel memory from the start).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct leg_key);
	__type(value, struct leg);
} legs SEC(".maps");

// Stores `to` (2 or 4 bytes, network order, in place of `from`) at `off`, and mends the UDP
// checksum; `pseudo` for the addresses, which the checksum covers through its pseudo-header.
static __always_inline int store(struct __sk_buff *skb, __u32 off, __u32 from, __u32 to, __u32 size, __u64 pseudo)
{
	if (from == to)
		return 0;
	if (bpf_l4_csum_replace(skb, UDP_CSUM_OFF, from, to, BPF_F_MARK_MANGLED_0 | pseudo | size))
		return -1;
	if (size == 2) {
		__u16 half = to;
		return bpf_skb_store_bytes(skb, off, &half, 2, 0);
	}
	return bpf_skb_store_bytes(skb, off, &to, 4, 0);
}

SEC("classifier")
int starling_rtp_relay(struct __sk_buff *skb)
{
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TCX_NEXT;
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + IP_OFF;
	struct udphdr *udp = data + UDP_OFF;
	__u8 *rtp = data + RTP_OFF;
	// The fixed RTP header must be in the linear part (it is, for packets this small).
	if ((void *)(rtp + 12) > end)
		return TCX_NEXT;
	if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(0x3fff)))
		return TCX_NEXT;
	struct leg_key key = { .saddr = ip->saddr, .daddr = ip->daddr, .sport = udp->source, .dport = udp->dest };
	struct leg *leg = bpf_map_lookup_elem(&legs, &key);
	if (!leg) {
		key.daddr = 0;
		leg = bpf_map_lookup_elem(&legs, &key);
		if (!leg)
			return TCX_NEXT;
	}

	// What RtpReader checks, and what the relay leg and the session would refuse or treat
	// apart: another version, RTCP (multiplexed), another stream, an unmapped payload type.
	__u8 b0 = rtp[0], b1 = rtp[1];
	__u8 pt = b1 & 0x7f;
	if ((b0 >> 6) != 2 || (pt >= 72 && pt <= 76))
		return TCX_NEXT;
	__u32 ssrc = bpf_ntohl(*(__u32 *)(rtp + 8));
	if (ssrc != leg->in_ssrc)
		return TCX_NEXT;
	__u8 out_pt = leg->pt_map[pt];
	if (out_pt == 0xff)
		return TCX_NEXT;
	__u16 seq_be = *(__u16 *)(rtp + 2);
	__u32 ts_be = *(__u32 *)(rtp + 4);
	__u16 seq = bpf_ntohs(seq_be);
	__u32 ts = bpf_ntohl(ts_be);
	__u16 old_word = *(__u16 *)rtp;
	__u32 old_saddr = ip->saddr, old_daddr = ip->daddr;
	__u16 old_sport = udp->source, old_dport = udp->dest;
	__s32 len = (__s32)bpf_ntohs(udp->len) - (__s32)sizeof(struct udphdr);

	// The payload's length, as RtpReader gives it: less the CSRCs, the extension and the
	// padding.
	__s32 header = 12 + 4 * (b0 & 0x0f);
	if (b0 & 0x10) {
		__u16 ext_words;
		if (header + 4 > len || bpf_skb_load_bytes(skb, RTP_OFF + header + 2, &ext_words, 2))
			return TCX_NEXT;
		header += 4 + 4 * bpf_ntohs(ext_words);
	}
	__s32 padding = 0;
	if (b0 & 0x20) {
		__u8 last;
		if (len < 1 || len > 2048 || bpf_skb_load_bytes(skb, RTP_OFF + (len - 1), &last, 1))
			return TCX_NEXT;
		padding = last;
	}
	__s32 payload = len - header - padding;
	if (payload < 0)
		return TCX_NEXT;

	// The session's receive statistics (RtpSession::handle_rtp).
	__u64 now = bpf_ktime_get_ns();
	__u16 max = (__u16)leg->max_seq;
	__u16 delta = seq - max;
	if (delta > 0 && delta < 0x8000) {
		__u32 cycles = leg->max_seq & 0xffff0000;
		if (seq < max)
			cycles += 0x10000;
		leg->max_seq = cycles | seq;
	}
	__sync_fetch_and_add(&leg->packets, 1);
	__sync_fetch_and_add(&leg->octets, payload);
	__sync_fetch_and_add(&leg->relayed_octets, len);
	__s64 arrival = (__s64)((now / 1000) * leg->clock_rate / 1000000);
	__s64 transit = arrival - (__s64)ts;
	if (leg->have_transit) {
		__s64 diff = transit - leg->last_transit;
		__u64 d = diff < 0 ? -diff : diff;
		if (d > 0x0fffffff)
			d = 0x0fffffff;
		leg->jitter_q4 = leg->jitter_q4 + (__u32)d - ((leg->jitter_q4 + 8) >> 4);
	}
	leg->last_transit = transit;
	leg->have_transit = 1;
	leg->last_rx_ns = now;

	// The relay leg (RelayLeg::relay, the stream unchanged).
	__u16 out_seq = seq + leg->seq_offset;
	__u32 out_ts = ts + leg->ts_offset;
	if (leg->have_last && out_seq == (__u16)(leg->last_seq + 1) && out_ts != leg->last_ts)
		leg->last_step = out_ts - leg->last_ts;
	leg->last_seq = out_seq;
	leg->last_ts = out_ts;
	leg->have_last = 1;
	__u16 new_word = bpf_htons((bpf_ntohs(old_word) & 0xff80) | out_pt);
	__u32 out_ssrc = bpf_htonl(leg->out_ssrc);
	__u32 out_saddr = leg->out_saddr, out_daddr = leg->out_daddr;
	__u16 out_sport = leg->out_sport, out_dport = leg->out_dport;

	// Rewrite: from the other call's socket to its far end. (Every store below invalidates
	// the packet pointers; only offsets are used from here on.)
	if (store(skb, RTP_OFF, old_word, new_word, 2, 0) ||
	    store(skb, RTP_OFF + 2, seq_be, bpf_htons(out_seq), 2, 0) ||
	    store(skb, RTP_OFF + 4, ts_be, bpf_htonl(out_ts), 4, 0) ||
	    store(skb, RTP_OFF + 8, bpf_htonl(ssrc), out_ssrc, 4, 0) ||
	    store(skb, UDP_OFF + offsetof(struct udphdr, source), old_sport, out_sport, 2, 0) ||
	    store(skb, UDP_OFF + offsetof(struct udphdr, dest), old_dport, out_dport, 2, 0) ||
	    store(skb, IP_OFF + offsetof(struct iphdr, saddr), old_saddr, out_saddr, 4, BPF_F_PSEUDO_HDR) ||
	    store(skb, IP_OFF + offsetof(struct iphdr, daddr), old_daddr, out_daddr, 4, BPF_F_PSEUDO_HDR))
		return TCX_DROP; // half rewritten (cannot happen for a linear packet)
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_saddr, out_saddr, 4) ||
	    bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_daddr, out_daddr, 4))
		return TCX_DROP;
	// Both far ends are on this host (the relay thread hands over only such legs): the stack
	// delivers the packet to the other one's socket.
	return TCX_PASS;
}

char LICENSE[] SEC("license") = "GPL";
