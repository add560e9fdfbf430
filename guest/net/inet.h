/*
 * Ethernet II, ARP, IPv4 and UDP for the network dump (docs/netdump-protocol.md): build a frame
 * into a caller's buffer, parse a received one. Pure computation on memory (no device, no
 * state), so the dump path may run it in ring 3. Addresses and ports are in host order here,
 * network order on the wire. IPv4 without options or fragments; every UDP datagram carries a
 * checksum (computed on send, required and verified on receive).
 */
#ifndef NET_INET_H
#define NET_INET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/ether.h"

#define INET_IP_HEADER		20
#define INET_UDP_HEADER		8
/* Ethernet + IPv4 + UDP headers before a UDP payload */
#define INET_UDP_OVERHEAD	(ETHER_HEADER + INET_IP_HEADER + INET_UDP_HEADER)
#define INET_ARP_FRAME		(ETHER_HEADER + 28)

#define ETHERTYPE_IPV4		0x0800
#define ETHERTYPE_ARP		0x0806
#define ARP_OP_REQUEST		1
#define ARP_OP_REPLY		2
#define IPPROTO_UDP		17

extern const uint8_t inet_broadcast_mac[ETHER_ADDR_LEN];

struct inet_endpoint {
	uint8_t mac[ETHER_ADDR_LEN];
	uint32_t ip;
	uint16_t port;
};

/*
 * An ARP frame (INET_ARP_FRAME bytes, no padding) into buf: from `self` (sender MAC and IP),
 * Ethernet destination `ether_dst`, about `target_mac`/`target_ip` (a request's target MAC is
 * zero). Returns its length.
 */
size_t inet_arp_build(void *buf, uint16_t op, const struct inet_endpoint *self, const uint8_t *ether_dst,
		      const uint8_t *target_mac, uint32_t target_ip);

/*
 * The Ethernet, IPv4 and UDP headers of a datagram whose `payload_len` bytes are already at
 * buf + INET_UDP_OVERHEAD, with both checksums; DF set, TTL 64, IP identification `ip_id`.
 * Returns the frame's length (no padding), 0 if the datagram would not fit an IPv4 packet.
 */
size_t inet_udp_build(void *buf, const struct inet_endpoint *src, const struct inet_endpoint *dst,
		      size_t payload_len, uint16_t ip_id);

enum inet_kind {
	INET_OTHER = 0,		/* not ARP or IPv4/UDP, or malformed: drop */
	INET_ARP,
	INET_UDP,
};

/* What a received frame is; the payload points into the frame. */
struct inet_frame {
	enum inet_kind kind;
	uint8_t dst_mac[ETHER_ADDR_LEN];
	uint8_t src_mac[ETHER_ADDR_LEN];
	/* INET_ARP (Ethernet, IPv4) */
	uint16_t arp_op;
	uint8_t arp_sender_mac[ETHER_ADDR_LEN];
	uint32_t arp_sender_ip;
	uint32_t arp_target_ip;
	/* INET_UDP: good IPv4 header checksum and UDP checksum, not a fragment */
	uint32_t src_ip, dst_ip;
	uint16_t src_port, dst_port;
	const uint8_t *payload;
	size_t payload_len;
};

/* Classify and check `len` bytes of a frame (destination MAC first, no FCS, maybe padded). */
enum inet_kind inet_parse(const void *frame, size_t len, struct inet_frame *out);

#endif
