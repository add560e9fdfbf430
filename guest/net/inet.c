/* Ethernet II, ARP, IPv4, UDP: frames built and parsed in place (see net/inet.h). */
#include "net/inet.h"
#include "lib/string.h"

const uint8_t inet_broadcast_mac[INET_MAC_LEN] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The Internet checksum's running sum (RFC 1071) of big-endian 16-bit words; an odd last byte
 * is the high half of a word. Folded only at the end. */
static uint64_t sum16(uint64_t sum, const uint8_t *p, size_t len)
{
	while (len >= 2) {
		sum += (uint32_t)(p[0] << 8 | p[1]);
		p += 2;
		len -= 2;
	}
	if (len)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

static uint16_t fold(uint64_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

/* The UDP pseudo-header: addresses, protocol, UDP length. */
static uint64_t pseudo_sum(uint32_t src, uint32_t dst, uint16_t udp_len)
{
	return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + IPPROTO_UDP + udp_len;
}

static void ether_header(uint8_t *p, const uint8_t *dst, const uint8_t *src, uint16_t type)
{
	memcpy(p, dst, INET_MAC_LEN);
	memcpy(p + 6, src, INET_MAC_LEN);
	put16(p + 12, type);
}

size_t inet_arp_build(void *buf, uint16_t op, const struct inet_endpoint *self, const uint8_t *ether_dst,
		      const uint8_t *target_mac, uint32_t target_ip)
{
	uint8_t *p = buf, *a = p + INET_ETHER_HEADER;

	ether_header(p, ether_dst, self->mac, ETHERTYPE_ARP);
	put16(a, 1);			/* hardware: Ethernet */
	put16(a + 2, ETHERTYPE_IPV4);
	a[4] = INET_MAC_LEN;
	a[5] = 4;
	put16(a + 6, op);
	memcpy(a + 8, self->mac, INET_MAC_LEN);
	put32(a + 14, self->ip);
	memcpy(a + 18, target_mac, INET_MAC_LEN);
	put32(a + 24, target_ip);
	return INET_ARP_FRAME;
}

size_t inet_udp_build(void *buf, const struct inet_endpoint *src, const struct inet_endpoint *dst,
		      size_t payload_len, uint16_t ip_id)
{
	uint8_t *p = buf, *ip = p + INET_ETHER_HEADER, *udp = ip + INET_IP_HEADER;
	size_t udp_len = INET_UDP_HEADER + payload_len;
	uint16_t csum;

	if (udp_len + INET_IP_HEADER > 0xffff)
		return 0;
	ether_header(p, dst->mac, src->mac, ETHERTYPE_IPV4);

	ip[0] = 0x45;			/* version 4, 5 words: no options */
	ip[1] = 0;
	put16(ip + 2, (uint16_t)(INET_IP_HEADER + udp_len));
	put16(ip + 4, ip_id);
	put16(ip + 6, 0x4000);		/* DF, never fragmented */
	ip[8] = 64;
	ip[9] = IPPROTO_UDP;
	put16(ip + 10, 0);
	put32(ip + 12, src->ip);
	put32(ip + 16, dst->ip);
	put16(ip + 10, (uint16_t)~fold(sum16(0, ip, INET_IP_HEADER)));

	put16(udp, src->port);
	put16(udp + 2, dst->port);
	put16(udp + 4, (uint16_t)udp_len);
	put16(udp + 6, 0);
	csum = (uint16_t)~fold(sum16(pseudo_sum(src->ip, dst->ip, (uint16_t)udp_len), udp, udp_len));
	put16(udp + 6, csum ? csum : 0xffff);	/* 0 means "no checksum": sent as its complement */
	return INET_UDP_OVERHEAD + payload_len;
}

static enum inet_kind parse_arp(const uint8_t *a, size_t len, struct inet_frame *out)
{
	if (len < 28 || get16(a) != 1 || get16(a + 2) != ETHERTYPE_IPV4 || a[4] != INET_MAC_LEN || a[5] != 4)
		return INET_OTHER;
	out->arp_op = get16(a + 6);
	memcpy(out->arp_sender_mac, a + 8, INET_MAC_LEN);
	out->arp_sender_ip = get32(a + 14);
	out->arp_target_ip = get32(a + 24);
	return out->kind = INET_ARP;
}

static enum inet_kind parse_udp(const uint8_t *ip, size_t len, struct inet_frame *out)
{
	size_t ihl, total, udp_len;
	const uint8_t *udp;

	if (len < INET_IP_HEADER || (ip[0] >> 4) != 4)
		return INET_OTHER;
	ihl = (size_t)(ip[0] & 0xf) * 4;
	total = get16(ip + 2);
	/* The frame may be padded past the datagram, never shorter. */
	if (ihl < INET_IP_HEADER || total < ihl || total > len || fold(sum16(0, ip, ihl)) != 0xffff)
		return INET_OTHER;
	if ((get16(ip + 6) & 0x3fff) != 0 || ip[9] != IPPROTO_UDP)	/* MF or an offset: a fragment */
		return INET_OTHER;
	udp = ip + ihl;
	if (total - ihl < INET_UDP_HEADER)
		return INET_OTHER;
	udp_len = get16(udp + 4);
	if (udp_len < INET_UDP_HEADER || udp_len > total - ihl)
		return INET_OTHER;
	out->src_ip = get32(ip + 12);
	out->dst_ip = get32(ip + 16);
	/* A checksum is required (0: none sent); over the pseudo-header it sums to all ones. */
	if (get16(udp + 6) == 0 ||
	    fold(sum16(pseudo_sum(out->src_ip, out->dst_ip, (uint16_t)udp_len), udp, udp_len)) != 0xffff)
		return INET_OTHER;
	out->src_port = get16(udp);
	out->dst_port = get16(udp + 2);
	out->payload = udp + INET_UDP_HEADER;
	out->payload_len = udp_len - INET_UDP_HEADER;
	return out->kind = INET_UDP;
}

enum inet_kind inet_parse(const void *frame, size_t len, struct inet_frame *out)
{
	const uint8_t *p = frame;

	memset(out, 0, sizeof(*out));
	out->kind = INET_OTHER;
	if (len < INET_ETHER_HEADER)
		return INET_OTHER;
	memcpy(out->dst_mac, p, INET_MAC_LEN);
	memcpy(out->src_mac, p + 6, INET_MAC_LEN);
	switch (get16(p + 12)) {
	case ETHERTYPE_ARP:
		return parse_arp(p + INET_ETHER_HEADER, len - INET_ETHER_HEADER, out);
	case ETHERTYPE_IPV4:
		return parse_udp(p + INET_ETHER_HEADER, len - INET_ETHER_HEADER, out);
	default:
		return INET_OTHER;
	}
}
