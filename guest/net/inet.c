/* Ethernet II, ARP, IPv4, UDP: frames built and parsed in place (see net/inet.h). */
#include "net/inet.h"
#include "lib/byteorder.h"
#include "lib/string.h"

const uint8_t inet_broadcast_mac[ETHER_ADDR_LEN] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

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
	memcpy(p, dst, ETHER_ADDR_LEN);
	memcpy(p + 6, src, ETHER_ADDR_LEN);
	put_be16(p + 12, type);
}

size_t inet_arp_build(void *buf, uint16_t op, const struct inet_endpoint *self, const uint8_t *ether_dst,
		      const uint8_t *target_mac, uint32_t target_ip)
{
	uint8_t *p = buf, *a = p + ETHER_HEADER;

	ether_header(p, ether_dst, self->mac, ETHERTYPE_ARP);
	put_be16(a, 1);			/* hardware: Ethernet */
	put_be16(a + 2, ETHERTYPE_IPV4);
	a[4] = ETHER_ADDR_LEN;
	a[5] = 4;
	put_be16(a + 6, op);
	memcpy(a + 8, self->mac, ETHER_ADDR_LEN);
	put_be32(a + 14, self->ip);
	memcpy(a + 18, target_mac, ETHER_ADDR_LEN);
	put_be32(a + 24, target_ip);
	return INET_ARP_FRAME;
}

size_t inet_udp_build(void *buf, const struct inet_endpoint *src, const struct inet_endpoint *dst,
		      size_t payload_len, uint16_t ip_id)
{
	uint8_t *p = buf, *ip = p + ETHER_HEADER, *udp = ip + INET_IP_HEADER;
	size_t udp_len = INET_UDP_HEADER + payload_len;
	uint16_t csum;

	if (udp_len + INET_IP_HEADER > 0xffff)
		return 0;
	ether_header(p, dst->mac, src->mac, ETHERTYPE_IPV4);

	ip[0] = 0x45;			/* version 4, 5 words: no options */
	ip[1] = 0;
	put_be16(ip + 2, (uint16_t)(INET_IP_HEADER + udp_len));
	put_be16(ip + 4, ip_id);
	put_be16(ip + 6, 0x4000);		/* DF, never fragmented */
	ip[8] = 64;
	ip[9] = IPPROTO_UDP;
	put_be16(ip + 10, 0);
	put_be32(ip + 12, src->ip);
	put_be32(ip + 16, dst->ip);
	put_be16(ip + 10, (uint16_t)~fold(sum16(0, ip, INET_IP_HEADER)));

	put_be16(udp, src->port);
	put_be16(udp + 2, dst->port);
	put_be16(udp + 4, (uint16_t)udp_len);
	put_be16(udp + 6, 0);
	csum = (uint16_t)~fold(sum16(pseudo_sum(src->ip, dst->ip, (uint16_t)udp_len), udp, udp_len));
	put_be16(udp + 6, csum ? csum : 0xffff);	/* 0 means "no checksum": sent as its complement */
	return INET_UDP_OVERHEAD + payload_len;
}

static enum inet_kind parse_arp(const uint8_t *a, size_t len, struct inet_frame *out)
{
	if (len < 28 || get_be16(a) != 1 || get_be16(a + 2) != ETHERTYPE_IPV4 || a[4] != ETHER_ADDR_LEN || a[5] != 4)
		return INET_OTHER;
	out->arp_op = get_be16(a + 6);
	memcpy(out->arp_sender_mac, a + 8, ETHER_ADDR_LEN);
	out->arp_sender_ip = get_be32(a + 14);
	out->arp_target_ip = get_be32(a + 24);
	return out->kind = INET_ARP;
}

static enum inet_kind parse_udp(const uint8_t *ip, size_t len, struct inet_frame *out)
{
	size_t ihl, total, udp_len;
	const uint8_t *udp;

	if (len < INET_IP_HEADER || (ip[0] >> 4) != 4)
		return INET_OTHER;
	ihl = (size_t)(ip[0] & 0xf) * 4;
	total = get_be16(ip + 2);
	/* The frame may be padded past the datagram, never shorter. */
	if (ihl < INET_IP_HEADER || total < ihl || total > len || fold(sum16(0, ip, ihl)) != 0xffff)
		return INET_OTHER;
	if ((get_be16(ip + 6) & 0x3fff) != 0 || ip[9] != IPPROTO_UDP)	/* MF or an offset: a fragment */
		return INET_OTHER;
	udp = ip + ihl;
	if (total - ihl < INET_UDP_HEADER)
		return INET_OTHER;
	udp_len = get_be16(udp + 4);
	if (udp_len < INET_UDP_HEADER || udp_len > total - ihl)
		return INET_OTHER;
	out->src_ip = get_be32(ip + 12);
	out->dst_ip = get_be32(ip + 16);
	/* A checksum is required (0: none sent); over the pseudo-header it sums to all ones. */
	if (get_be16(udp + 6) == 0 ||
	    fold(sum16(pseudo_sum(out->src_ip, out->dst_ip, (uint16_t)udp_len), udp, udp_len)) != 0xffff)
		return INET_OTHER;
	out->src_port = get_be16(udp);
	out->dst_port = get_be16(udp + 2);
	out->payload = udp + INET_UDP_HEADER;
	out->payload_len = udp_len - INET_UDP_HEADER;
	return out->kind = INET_UDP;
}

enum inet_kind inet_parse(const void *frame, size_t len, struct inet_frame *out)
{
	const uint8_t *p = frame;

	memset(out, 0, sizeof(*out));
	out->kind = INET_OTHER;
	if (len < ETHER_HEADER)
		return INET_OTHER;
	memcpy(out->dst_mac, p, ETHER_ADDR_LEN);
	memcpy(out->src_mac, p + 6, ETHER_ADDR_LEN);
	switch (get_be16(p + 12)) {
	case ETHERTYPE_ARP:
		return parse_arp(p + ETHER_HEADER, len - ETHER_HEADER, out);
	case ETHERTYPE_IPV4:
		return parse_udp(p + ETHER_HEADER, len - ETHER_HEADER, out);
	default:
		return INET_OTHER;
	}
}
