/* cntrace's eBPF probes, compiled by bcc as ONE module (one clang run; the bytecode is cached).
 *
 *   cntrace_tc_in / cntrace_tc_eg  tc (clsact) on ingress / egress: report packets carrying an
 *                                  armed marker, and their replies, as seen at that interface.
 *   cntrace_kfree                  tracepoint skb:kfree_skb: report the probe's drop (or every
 *                                  drop, for `cntrace drops`) with the kernel's reason.
 *
 * Kernel layouts are never taken from headers (the installed ones may describe another
 * kernel): struct member offsets (from BTF) and the kfree_skb record layout (from tracefs) are
 * read from the cnt_offsets map, which the loader fills for the running kernel. The bytecode
 * is therefore the same on every kernel, and ships prebuilt (probes/cntrace.bpf.json).
 * The tc programs never change a packet and always return TC_ACT_UNSPEC (go on with the next
 * filter), so they can sit beside filters owned by other software.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>

#include "cntrace_event.h"

#define P_ICMP 1
#define P_TCP 6
#define P_UDP 17
#define P_ICMPV6 58

#define VXLAN_PORT 8472      /* Linux's default VXLAN port (flannel's) */
#define VXLAN_PORT_IANA 4789 /* IANA's */
#define VXLAN_INNER 30       /* UDP 8 + VXLAN 8 + inner Ethernet 14: the inner IP header */

#define TCPF_FIN 0x01
#define TCPF_SYN 0x02
#define TCPF_RST 0x04
#define TCPF_ACK 0x10

#define RINGBUF_PAGES 256 /* 1 MiB with 4 KiB pages: ~4,000 events of backlog */

BPF_ARRAY(cnt_config, struct cnt_config, 1);
BPF_ARRAY(cnt_offsets, struct cnt_offsets, 1);
BPF_HASH(cnt_markers, u32, struct cnt_marker, 64);
BPF_TABLE("lru_hash", struct cnt_flow, struct cnt_flow_val, cnt_flows, 4096);
/* port -> cnt_config.gen when a reply may be addressed to that port: a cheap array look-up
 * spares every other UDP packet the hash look-up in cnt_flows */
BPF_ARRAY(cnt_ports, u32, 65536);
BPF_ARRAY(cnt_stats, u64, 4); /* 0: events lost (ring buffer full), 1: events sent */
BPF_RINGBUF_OUTPUT(cnt_events, RINGBUF_PAGES);

/* What the programs learn from a packet's headers. */
struct cnt_hdr {
    struct cnt_flow flow;  /* addresses, ports (ICMP echo: id), protocol */
    struct cnt_flow inner; /* ICMP errors: the quoted packet */
    u32 seq;
    u32 ack;
    u32 pay0; /* first 8 bytes after the UDP header or the ICMP header, big endian */
    u32 pay1;
    u32 in_tag0; /* quoted packet: TCP seq, or its first 8 payload bytes */
    u32 in_tag1;
    u16 ip_id;
    u16 l3len; /* the IP packet's length by its header */
    u16 l4off; /* where the transport header starts, from the network header */
    u8 tcp_flags;
    u8 icmp_type;
    u8 icmp_code;
    u8 has_inner;
};

/* Read packet bytes relative to the network header: from the skb in tc, from kernel memory
 * (head + network_header) in the tracepoint. from_skb is a constant after inlining, so each
 * program keeps only the helper it may call. */
static __always_inline int cnt_load(int from_skb, void *ctx, u64 base, u32 off, void *dst,
                                    u32 len)
{
    if (from_skb)
        return bpf_skb_load_bytes_relative(ctx, off, dst, len, BPF_HDR_START_NET);
    return bpf_probe_read_kernel(dst, len, (void *)(base + off));
}

static __always_inline u32 be32(const u8 *p)
{
    return ((u32)p[0] << 24) | ((u32)p[1] << 16) | ((u32)p[2] << 8) | (u32)p[3];
}

static __always_inline u16 be16(const u8 *p)
{
    return ((u16)p[0] << 8) | (u16)p[1];
}

/* The IP header at off: fills addresses, protocol, family; returns the L4 offset or -1. */
static __always_inline int cnt_parse_ip(int from_skb, void *ctx, u64 base, u32 off,
                                        struct cnt_flow *f, u16 *ip_id, u16 *l3len)
{
    u8 b[40];
    if (cnt_load(from_skb, ctx, base, off, b, 20) < 0)
        return -1;
    u8 ver = b[0] >> 4;
    if (ver == 4) {
        u32 ihl = (b[0] & 0x0f) * 4;
        if (ihl < 20)
            return -1;
        if (((b[6] & 0x1f) | b[7]) != 0)
            return -1; /* a non-first fragment has no L4 header */
        f->family = 4;
        f->proto = b[9];
        __builtin_memcpy(f->saddr, &b[12], 4);
        __builtin_memcpy(f->daddr, &b[16], 4);
        if (ip_id)
            *ip_id = be16(&b[4]);
        if (l3len)
            *l3len = be16(&b[2]);
        return off + ihl;
    }
    if (ver == 6) {
        if (cnt_load(from_skb, ctx, base, off, b, 40) < 0)
            return -1;
        f->family = 6;
        f->proto = b[6];
        __builtin_memcpy(f->saddr, &b[8], 16);
        __builtin_memcpy(f->daddr, &b[24], 16);
        if (l3len)
            *l3len = 40 + be16(&b[4]);
        return off + 40;
    }
    return -1;
}

static __always_inline int cnt_is_icmp_error(u8 proto, u8 type)
{
    if (proto == P_ICMP)
        return type == 3 || type == 11 || type == 12;
    if (proto == P_ICMPV6)
        return type >= 1 && type <= 4;
    return 0;
}

/* Parse the network and transport headers; 0 when the packet is IP. ``protos`` (CNT_PROTO_*)
 * names the protocols worth a closer look: for the others -1 comes back before the transport
 * header is read (ICMP is always read: its errors may quote any probe). */
static __always_inline int cnt_parse(int from_skb, void *ctx, u64 base, struct cnt_hdr *h,
                                     u32 protos, u32 off)
{
    u8 b[16];
    int l4 = cnt_parse_ip(from_skb, ctx, base, off, &h->flow, &h->ip_id, &h->l3len);
    if (l4 < 0)
        return -1;
    h->l4off = l4;
    u8 proto = h->flow.proto;
    if ((proto == P_TCP && !(protos & CNT_PROTO_TCP)) ||
        (proto == P_UDP && !(protos & CNT_PROTO_UDP)))
        return -1;
    if (proto != P_TCP && proto != P_UDP && proto != P_ICMP && proto != P_ICMPV6)
        return 0;
    if (cnt_load(from_skb, ctx, base, l4, b, 16) < 0)
        return 0; /* a header-only packet: addresses are still worth reporting */
    if (proto == P_TCP) {
        h->flow.sport = be16(&b[0]);
        h->flow.dport = be16(&b[2]);
        h->seq = be32(&b[4]);
        h->ack = be32(&b[8]);
        h->tcp_flags = b[13];
        return 0;
    }
    if (proto == P_UDP) {
        h->flow.sport = be16(&b[0]);
        h->flow.dport = be16(&b[2]);
        h->pay0 = be32(&b[8]);
        h->pay1 = be32(&b[12]);
        return 0;
    }
    h->icmp_type = b[0];
    h->icmp_code = b[1];
    h->pay0 = be32(&b[8]);
    h->pay1 = be32(&b[12]);
    if (!cnt_is_icmp_error(proto, b[0])) {
        h->flow.sport = be16(&b[4]); /* echo identifier */
        return 0;
    }
    /* An ICMP error: the quoted packet starts 8 bytes into the ICMP message. */
    int in4 = cnt_parse_ip(from_skb, ctx, base, l4 + 8, &h->inner, 0, 0);
    if (in4 < 0)
        return 0;
    if (cnt_load(from_skb, ctx, base, in4, b, 16) < 0)
        return 0;
    h->has_inner = 1;
    if (h->inner.proto == P_TCP || h->inner.proto == P_UDP) {
        h->inner.sport = be16(&b[0]);
        h->inner.dport = be16(&b[2]);
    } else {
        h->inner.sport = be16(&b[4]);
    }
    if (h->inner.proto == P_TCP) {
        h->in_tag0 = be32(&b[4]);
    } else {
        h->in_tag0 = be32(&b[8]);
        h->in_tag1 = be32(&b[12]);
    }
    return 0;
}

/* Like cnt_parse, but a VXLAN packet (UDP to 8472 or 4789) is parsed as the frame it carries,
 * so a probe crossing an overlay is found on the underlay too; the outer headers stay in the
 * bytes the event copies. */
static __always_inline int cnt_parse_any(int from_skb, void *ctx, u64 base, struct cnt_hdr *h,
                                         u32 protos)
{
    if (cnt_parse(from_skb, ctx, base, h, protos | CNT_PROTO_UDP, 0) < 0)
        return -1;
    if (h->flow.proto != P_UDP)
        return 0;
    if (h->flow.dport != VXLAN_PORT && h->flow.dport != VXLAN_PORT_IANA)
        return (protos & CNT_PROTO_UDP) ? 0 : -1;
    struct cnt_hdr in = {};
    if (cnt_parse(from_skb, ctx, base, &in, protos, h->l4off + VXLAN_INNER) < 0)
        return -1;
    *h = in;
    return 0;
}

static __always_inline int cnt_known_nonce(u32 nonce)
{
    return cnt_markers.lookup(&nonce) != 0;
}

static __always_inline void cnt_reverse(const struct cnt_flow *f, struct cnt_flow *r)
{
    __builtin_memcpy(r->saddr, f->daddr, 16);
    __builtin_memcpy(r->daddr, f->saddr, 16);
    r->sport = f->dport;
    r->dport = f->sport;
    r->proto = f->proto;
    r->family = f->family;
}

static __always_inline int cnt_port_wanted(u16 port, u32 gen)
{
    u32 key = port;
    u32 *g = cnt_ports.lookup(&key);
    return g && *g == gen;
}

/* Does this packet belong to an armed probe? Returns the CNT_MATCH_* and sets nonce/is_reply. */
static __always_inline int cnt_match(struct cnt_hdr *h, u32 gen, u32 *nonce, u8 *is_reply)
{
    u8 proto = h->flow.proto;
    if (proto == P_TCP) {
        u8 fl = h->tcp_flags;
        if ((fl & TCPF_SYN) && !(fl & TCPF_ACK) && cnt_known_nonce(h->seq)) {
            *nonce = h->seq;
            *is_reply = 0;
            return CNT_MATCH_MARKER;
        }
        if ((fl & (TCPF_SYN | TCPF_RST)) && (fl & TCPF_ACK) && cnt_known_nonce(h->ack - 1)) {
            *nonce = h->ack - 1;
            *is_reply = 1;
            return CNT_MATCH_ACK;
        }
        return 0;
    }
    if (proto != P_UDP && proto != P_ICMP && proto != P_ICMPV6)
        return 0;
    if (h->has_inner) {
        struct cnt_flow_val *v = cnt_flows.lookup(&h->inner);
        if (v && v->kind == 2)
            return 0; /* an error about a reply (the source answering it): not the probe's */
        if (h->inner.proto == P_TCP && cnt_known_nonce(h->in_tag0)) {
            *nonce = h->in_tag0;
            *is_reply = 1;
            return CNT_MATCH_QUOTE;
        }
        if (h->inner.proto != P_TCP && h->in_tag0 == CNT_MAGIC && cnt_known_nonce(h->in_tag1)) {
            *nonce = h->in_tag1;
            *is_reply = 1;
            return CNT_MATCH_QUOTE;
        }
        if (v && v->kind == 1) {
            *nonce = v->nonce; /* quoted only partly, but on the probe's flow */
            *is_reply = 1;
            return CNT_MATCH_QUOTE;
        }
        return 0;
    }
    if (h->pay0 == CNT_MAGIC && cnt_known_nonce(h->pay1)) {
        *nonce = h->pay1;
        struct cnt_flow_val *v = cnt_flows.lookup(&h->flow);
        /* ICMP echo replies say so; a UDP echo of the payload is a reply by its flow */
        *is_reply = (proto == P_ICMP && h->icmp_type == 0) ||
                    (proto == P_ICMPV6 && h->icmp_type == 129) || (v && v->kind == 2);
        return CNT_MATCH_MARKER;
    }
    if (proto == P_UDP && cnt_port_wanted(h->flow.dport, gen)) {
        struct cnt_flow_val *v = cnt_flows.lookup(&h->flow);
        if (v && v->kind == 2) {
            *nonce = v->nonce;
            *is_reply = 1;
            return CNT_MATCH_FLOW;
        }
    }
    return 0;
}

/* Remember the probe's flow as seen here, and the reply flow it calls for. */
static __always_inline void cnt_learn(struct cnt_hdr *h, u32 nonce, u32 gen)
{
    struct cnt_flow_val fwd = {.nonce = nonce, .kind = 1};
    struct cnt_flow_val rev = {.nonce = nonce, .kind = 2};
    struct cnt_flow r = {};
    cnt_reverse(&h->flow, &r);
    cnt_flows.update(&h->flow, &fwd);
    cnt_flows.update(&r, &rev);
    u32 port = h->flow.sport; /* a reply comes back to the source port as seen here */
    cnt_ports.update(&port, &gen);
}

static __always_inline void cnt_count(int idx)
{
    u64 *c = cnt_stats.lookup(&idx);
    if (c)
        __sync_fetch_and_add(c, 1);
}

static __always_inline void cnt_fill(struct cnt_event *e, struct cnt_hdr *h)
{
    e->family = h->flow.family;
    e->proto = h->flow.proto;
    __builtin_memcpy(e->saddr, h->flow.saddr, 16);
    __builtin_memcpy(e->daddr, h->flow.daddr, 16);
    e->sport = h->flow.sport;
    e->dport = h->flow.dport;
    e->seq = h->seq;
    e->ack = h->ack;
    e->ip_id = h->ip_id;
    e->tcp_flags = h->tcp_flags;
    e->icmp_type = h->icmp_type;
    e->icmp_code = h->icmp_code;
}

/* The namespace inode of a net_device (0 when the device is unknown). */
static __always_inline u32 cnt_dev_netns(struct cnt_offsets *o, u64 dev)
{
    u64 net = 0;
    u32 inum = 0;
    if (!dev)
        return 0;
    bpf_probe_read_kernel(&net, sizeof(net), (void *)(dev + o->dev_nd_net));
    if (!net)
        return 0;
    bpf_probe_read_kernel(&inum, sizeof(inum), (void *)(net + o->net_inum));
    return inum;
}

static __always_inline int cnt_tc(struct __sk_buff *skb, u32 kind)
{
    int zero = 0;
    struct cnt_config *cfg = cnt_config.lookup(&zero);
    if (!cfg || cfg->n_markers == 0)
        return TC_ACT_UNSPEC;

    struct cnt_hdr h = {};
    if (cnt_parse_any(1, skb, 0, &h, cfg->protos) < 0)
        return TC_ACT_UNSPEC;
    u32 nonce = 0;
    u8 is_reply = 0;
    int how = cnt_match(&h, cfg->gen, &nonce, &is_reply);
    if (!how)
        return TC_ACT_UNSPEC;
    if (!is_reply)
        cnt_learn(&h, nonce, cfg->gen);

    struct cnt_offsets *o = cnt_offsets.lookup(&zero);
    if (!o)
        return TC_ACT_UNSPEC;
    struct cnt_event *e = cnt_events.ringbuf_reserve(sizeof(struct cnt_event));
    if (!e) {
        cnt_count(0);
        return TC_ACT_UNSPEC;
    }
    /* The context is the kernel's sk_buff: its address and device come from BTF offsets. */
    u64 addr = 0, dev = 0, head = 0, data = 0;
    u16 nh = 0;
    bpf_probe_read_kernel(&addr, sizeof(addr), &skb);
    bpf_probe_read_kernel(&dev, sizeof(dev), (void *)(addr + o->skb_dev));
    bpf_probe_read_kernel(&head, sizeof(head), (void *)(addr + o->skb_head));
    bpf_probe_read_kernel(&data, sizeof(data), (void *)(addr + o->skb_data));
    bpf_probe_read_kernel(&nh, sizeof(nh), (void *)(addr + o->skb_network_header));

    e->t_ns = bpf_ktime_get_ns();
    e->skb = addr;
    e->location = 0;
    e->kind = kind;
    e->ifindex = skb->ifindex;
    e->netns = cnt_dev_netns(o, dev);
    e->mark = skb->mark;
    e->reason = 0;
    e->nonce = nonce;
    e->len = skb->len;
    e->l3off = (u16)(head + nh - data);
    e->is_reply = is_reply;
    e->match = how;
    cnt_fill(e, &h);
    u32 n = skb->len;
    if (n > CNT_DATA_LEN)
        n = CNT_DATA_LEN;
    e->caplen = 0;
    if (n > 0 && bpf_skb_load_bytes(skb, 0, e->data, n) == 0)
        e->caplen = n;
    cnt_events.ringbuf_submit(e, 0);
    cnt_count(1);
    return TC_ACT_UNSPEC;
}

int cntrace_tc_in(struct __sk_buff *skb)
{
    return cnt_tc(skb, CNT_EV_TC_INGRESS);
}

int cntrace_tc_eg(struct __sk_buff *skb)
{
    return cnt_tc(skb, CNT_EV_TC_EGRESS);
}

/* skb:kfree_skb. The record is read at offsets from the tracepoint's format file. */
int cntrace_kfree(void *ctx)
{
    int zero = 0;
    struct cnt_config *cfg = cnt_config.lookup(&zero);
    if (!cfg || !(cfg->flags & (CNT_CFG_MARKER_DROPS | CNT_CFG_ALL_DROPS)))
        return 0;
    struct cnt_offsets *o = cnt_offsets.lookup(&zero);
    if (!o)
        return 0;

    u64 skb = 0, location = 0, dev = 0, head = 0;
    u32 reason = 0;
    u16 nh = 0;
    bpf_probe_read_kernel(&skb, sizeof(skb), ctx + o->tp_skbaddr);
    bpf_probe_read_kernel(&location, sizeof(location), ctx + o->tp_location);
    if (o->tp_reason)
        bpf_probe_read_kernel(&reason, sizeof(reason), ctx + o->tp_reason);
    if (!skb)
        return 0;
    bpf_probe_read_kernel(&dev, sizeof(dev), (void *)(skb + o->skb_dev));
    u32 netns = cnt_dev_netns(o, dev);
    int all = cfg->flags & CNT_CFG_ALL_DROPS;
    if (all && cfg->netns && cfg->netns != netns)
        all = 0;

    bpf_probe_read_kernel(&head, sizeof(head), (void *)(skb + o->skb_head));
    bpf_probe_read_kernel(&nh, sizeof(nh), (void *)(skb + o->skb_network_header));
    struct cnt_hdr h = {};
    int parsed = -1;
    if (head && nh != 0xffff)
        parsed = all ? cnt_parse(0, ctx, head + nh, &h, 0xff, 0)
                     : cnt_parse_any(0, ctx, head + nh, &h, cfg->protos);

    u32 nonce = 0;
    u8 is_reply = 0;
    int how = 0;
    if (parsed == 0 && (cfg->flags & CNT_CFG_MARKER_DROPS) && cfg->n_markers)
        how = cnt_match(&h, cfg->gen, &nonce, &is_reply);
    if (!how && all)
        how = CNT_MATCH_ANY;
    if (!how)
        return 0;

    struct cnt_event *e = cnt_events.ringbuf_reserve(sizeof(struct cnt_event));
    if (!e) {
        cnt_count(0);
        return 0;
    }
    u32 len = 0, mark = 0, ifindex = 0;
    bpf_probe_read_kernel(&len, sizeof(len), (void *)(skb + o->skb_len));
    bpf_probe_read_kernel(&mark, sizeof(mark), (void *)(skb + o->skb_mark));
    if (dev)
        bpf_probe_read_kernel(&ifindex, sizeof(ifindex), (void *)(dev + o->dev_ifindex));
    e->t_ns = bpf_ktime_get_ns();
    e->skb = skb;
    e->location = location;
    e->kind = CNT_EV_DROP;
    e->ifindex = ifindex;
    e->netns = netns;
    e->mark = mark;
    e->reason = reason;
    e->nonce = nonce;
    e->len = len;
    e->l3off = 0;
    e->is_reply = is_reply;
    e->match = how;
    e->caplen = 0;
    if (parsed == 0) {
        cnt_fill(e, &h);
        /* the packet from its network header on, as long as its IP header says */
        u32 n = h.l3len;
        if (n > CNT_DATA_LEN)
            n = CNT_DATA_LEN;
        if (n > 0 && bpf_probe_read_kernel(e->data, n, (void *)(head + nh)) == 0)
            e->caplen = n;
    } else {
        e->family = 0;
        e->proto = 0;
        e->sport = 0;
        e->dport = 0;
        e->seq = 0;
        e->ack = 0;
        e->ip_id = 0;
        e->tcp_flags = 0;
        e->icmp_type = 0;
        e->icmp_code = 0;
        __builtin_memset(e->saddr, 0, 16);
        __builtin_memset(e->daddr, 0, 16);
    }
    cnt_events.ringbuf_submit(e, 0);
    cnt_count(1);
    return 0;
}
