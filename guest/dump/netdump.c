/*
 * The network dump client (docs/netdump-protocol.md, sections 5 and 6) as a struct dumpdev_ops
 * over a NIC's dddump (dump/dumpnic.h): DUMPINIT asks the server for the partition (ARP, then
 * QUERY), DUMPSTART announces the dump (the NIC's DUMPSTART, ARP, HERALD), DUMPWRITE becomes
 * DATA messages with a window of them in flight, DUMP_FSYNC a FLUSH, DUMPEND a FINISH.
 *
 * Every message waits for its ACK, matched by (type, seq, dump_id); one unacknowledged for its
 * RTO goes again byte for byte (its RTO doubled, up to 1 s), and one
 * unacknowledged for longer than the I/O timeout since it was first sent fails the exchange
 * with ETIMEDOUT. Frames are built and parsed in ring 3 (the CRC32C, the UDP checksum and the
 * copy of the data are the heavy part: docs/guest.md, "Ring 3"); all state is the dump path's
 * (lib/dumpstate.h).
 */
#include "dump/netdump.h"
#include "arch/x86/pin.h"
#include "arch/x86/tsc.h"
#include "arch/x86/usermode.h"
#include "lib/byteorder.h"
#include "lib/crc.h"
#include "lib/dumpstate.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "lib/testfault.h"
#include "net/inet.h"

#define ND_MAGIC		0x44424E44u	/* "DBND" */
#define ND_VERSION		1
#define ND_HEADER		48
#define ND_ACK			0x80
#define ND_ROOM			20		/* ACK of QUERY/HERALD: u64 partition, u32 block, max_data, window */
#define ND_HERALD_PAYLOAD	12

enum nd_type {
	ND_QUERY = 1,
	ND_HERALD,
	ND_DATA,
	ND_FLUSH,
	ND_FINISH,
};

#define ND_MAX_TRANSFER		(1u << 20)	/* DUMPQUERY's max_tsize: the writer's largest write */
#define ND_FRAME_BUF		9216		/* >= 14 + NETDUMP_MTU_MAX */
/* The RTO follows the round trips measured (Jacobson/Karels, RFC 6298: SRTT + 4 RTTVAR, samples
 * only from messages sent once); 200 ms before the first sample; never below 10 ms. */
#define ND_RTO_FIRST_MS		200
#define ND_RTO_MIN_MS		10
#define ND_RTO_MAX_MS		1000
#define ND_ARP_TRIES		3
#define ND_ARP_GAP_MS		200
#define ND_QUERY_TRIES		5
#define ND_QUERY_GAP_MS		500
#define ND_BLOCK_MIN		512
#define ND_BLOCK_MAX		65536

/* A message sent and not yet acknowledged. */
struct nd_msg {
	bool used;
	uint8_t type;
	uint32_t seq;
	uint32_t bytes;			/* DATA: payload bytes */
	uint64_t offset;		/* DATA: partition byte offset */
	uint64_t pos;			/* DATA: where its bytes start in the write */
	uint64_t first;			/* TSC: first sent */
	uint64_t next;			/* TSC: due for retransmission */
	uint32_t rto_ms;
	bool resent;			/* retransmitted: its ACK is no round-trip sample (Karn) */
};

/* What a received frame was (parse_here's answer). */
enum nd_rx {
	RX_DROP,
	RX_ARP_REQUEST,			/* for our address: answered */
	RX_ARP_REPLY,			/* from the server */
	RX_ACK,				/* a well-formed message from the server, type ND_ACK | t */
};

struct netdump {
	struct dump_nic nic;
	int (*dumpwrite)(struct dump_nic *nic, struct uio *uio);
	uint32_t min_tsize, max_tsize;
	bool nopad;			/* testfault net-nopad, for the ring-3 frame builder */
	bool dead;			/* a message of this dump timed out: the rest fail at once */
	struct inet_endpoint self, server;
	uint32_t cfg_window, iotimeout_ms;
	uint8_t dump_id[16];
	bool in_use, nic_ready;

	/* the partition (QUERY) and the dump's sizes (HERALD) */
	uint64_t part_bytes;
	uint32_t block_size;
	uint32_t guest_max_data;	/* what fits our MTU */
	uint32_t max_data, window;	/* agreed with the server */
	uint32_t next_seq;

	/* the exchange in progress: DATA from uio (total bytes from partition offset base) */
	struct nd_msg msgs[NETDUMP_WINDOW_MAX];
	uint32_t inflight;
	const struct uio *uio;
	uint64_t base, total, sent;
	uint32_t refused;		/* first nonzero ACK status */
	uint64_t soonest;		/* TSC: no message is due before */
	bool fail_offset_set;		/* the exchange failed at a DATA message: its offset */
	uint64_t fail_offset;
	bool arp_answered;

	/* the last message received (parse_here) */
	struct inet_frame in;
	uint8_t in_type;
	uint32_t in_seq, in_status;
	uint8_t in_dump_id[16];
	uint8_t in_room[ND_ROOM];
	uint32_t in_payload;

	/* the room the last QUERY or HERALD ACK gave */
	uint64_t room_part_bytes;
	uint32_t room_block, room_max_data, room_window;

	uint64_t frames_sent, retransmits, acks, duplicates, dropped, arp_answers, data_bytes, flushes;
	uint32_t srtt_us, rttvar_us, rto_ms;	/* the round-trip estimate; srtt 0: no sample yet */

	uint8_t tx[ND_FRAME_BUF] __attribute__((aligned(64)));
	uint8_t rx[ND_FRAME_BUF] __attribute__((aligned(64)));
};

/* The one instance: the network dump is the primary only (docs/netdump-protocol.md). */
static struct netdump netdump __dumpstate;

static const uint8_t no_dump_id[16];

static const uint8_t *dump_id_of(const struct netdump *nd, uint8_t type)
{
	return type == ND_QUERY ? no_dump_id : nd->dump_id;
}

/* ---- ring 3: frames built and parsed ------------------------------------------------------- */

/*
 * The frame of message `m` in nd->tx: Ethernet, IPv4, UDP, the 48-byte header, the payload,
 * zeros up to a multiple of min_tsize (or max_tsize). Pure: runs in ring 3. Returns its length.
 */
static uint64_t build_msg_here(uint64_t ndp, uint64_t mp, uint64_t unused)
{
	struct netdump *nd = (struct netdump *)(uintptr_t)ndp;
	const struct nd_msg *m = (const struct nd_msg *)(uintptr_t)mp;
	uint8_t *h = nd->tx + INET_UDP_OVERHEAD, *payload = h + ND_HEADER;
	uint32_t bytes = 0, crc;
	uint64_t len, padded;

	if (m->type == ND_DATA) {
		bytes = m->bytes;
		iov_gather(payload, nd->uio->uio_iov, nd->uio->uio_iovcnt, m->pos, bytes);
	} else if (m->type == ND_HERALD) {
		bytes = ND_HERALD_PAYLOAD;
		put_be32(payload, nd->block_size);
		put_be32(payload + 4, nd->guest_max_data);
		put_be32(payload + 8, nd->cfg_window);
	}
	put_be32(h, ND_MAGIC);
	h[4] = ND_VERSION;
	h[5] = m->type;
	put_be16(h + 6, ND_HEADER);
	put_be32(h + 8, m->seq);
	put_be32(h + 12, bytes);
	put_be64(h + 16, m->type == ND_DATA ? m->offset : 0);
	memcpy(h + 24, dump_id_of(nd, m->type), 16);
	put_be32(h + 40, 0);
	put_be32(h + 44, 0);
	crc = crc32c_compute(crc32c_compute(CRC32C_INIT, h, ND_HEADER), payload, bytes);
	put_be32(h + 44, ~crc);

	len = inet_udp_build(nd->tx, &nd->self, &nd->server, ND_HEADER + bytes, (uint16_t)m->seq);
	padded = (len + nd->min_tsize - 1) / nd->min_tsize * nd->min_tsize;
	if (padded > nd->max_tsize)
		padded = nd->max_tsize;
	if (nd->nopad && len >= ETHER_MIN_FRAME)
		padded = len;	/* testfault net-nopad: read in ring 0 (agree) */
	memset(nd->tx + len, 0, padded - len);
	return padded;
}

static bool mac_is(const uint8_t *a, const uint8_t *b)
{
	return memcmp(a, b, ETHER_ADDR_LEN) == 0;
}

/* What the `len` bytes in nd->rx are, per section 6's drop rule; a message's fields into nd->in_*.
 * Pure: runs in ring 3. */
static uint64_t parse_here(uint64_t ndp, uint64_t len, uint64_t unused)
{
	struct netdump *nd = (struct netdump *)(uintptr_t)ndp;
	struct inet_frame *f = &nd->in;
	const uint8_t *h;
	uint32_t crc, payload;

	switch (inet_parse(nd->rx, len, f)) {
	case INET_ARP:
		if (f->arp_op == ARP_OP_REQUEST && f->arp_target_ip == nd->self.ip)
			return RX_ARP_REQUEST;
		if (f->arp_op == ARP_OP_REPLY && f->arp_sender_ip == nd->server.ip)
			return RX_ARP_REPLY;
		return RX_DROP;
	case INET_UDP:
		break;
	default:
		return RX_DROP;
	}
	if ((!mac_is(f->dst_mac, nd->self.mac) && !mac_is(f->dst_mac, inet_broadcast_mac)) ||
	    f->src_ip != nd->server.ip || f->src_port != nd->server.port || f->dst_ip != nd->self.ip ||
	    f->dst_port != nd->self.port || f->payload_len < ND_HEADER)
		return RX_DROP;
	h = f->payload;
	payload = get_be32(h + 12);
	if (get_be32(h) != ND_MAGIC || h[4] != ND_VERSION || get_be16(h + 6) != ND_HEADER ||
	    payload != f->payload_len - ND_HEADER)
		return RX_DROP;
	crc = crc32c_compute(CRC32C_INIT, h, ND_HEADER - 4);
	crc = crc32c_compute(crc, (const uint8_t[4]){ 0 }, 4);
	crc = ~crc32c_compute(crc, h + ND_HEADER, payload);
	if (crc != get_be32(h + 44) || !(h[5] & ND_ACK))
		return RX_DROP;
	nd->in_type = h[5] & (uint8_t)~ND_ACK;
	nd->in_seq = get_be32(h + 8);
	nd->in_status = get_be32(h + 40);
	memcpy(nd->in_dump_id, h + 24, 16);
	nd->in_payload = payload;
	if (payload == ND_ROOM)
		memcpy(nd->in_room, h + ND_HEADER, ND_ROOM);
	return RX_ACK;
}

/* ---- frames through the NIC ---------------------------------------------------------------- */

static int send_frame(struct netdump *nd, uint64_t len)
{
	struct iovec iov = { nd->tx, (size_t)len };
	struct uio uio = { .uio_iov = &iov, .uio_iovcnt = 1, .uio_resid = len };
	int err = nd->dumpwrite(&nd->nic, &uio);

	if (!err)
		nd->frames_sent++;
	return err;
}

/* The exchange fails at message m: a DATA message names the offset of the failed write. */
static void failed_at(struct netdump *nd, const struct nd_msg *m)
{
	if (m->type == ND_DATA && !nd->fail_offset_set) {
		nd->fail_offset = m->offset;
		nd->fail_offset_set = true;
	}
}

static int transmit(struct netdump *nd, struct nd_msg *m)
{
	int err = send_frame(nd, run_unprivileged(build_msg_here, (uintptr_t)nd, (uintptr_t)m, 0));

	if (err)
		failed_at(nd, m);
	return err;
}

static int send_arp(struct netdump *nd, uint16_t op, const uint8_t *ether_dst, const uint8_t *target_mac,
		    uint32_t target_ip)
{
	size_t len = inet_arp_build(nd->tx, op, &nd->self, ether_dst, target_mac, target_ip);

	memset(nd->tx + len, 0, ETHER_MIN_FRAME - len);	/* a multiple of min_tsize: one */
	return send_frame(nd, ETHER_MIN_FRAME);
}

static void forget_all(struct netdump *nd)
{
	for (int i = 0; i < NETDUMP_WINDOW_MAX; i++)
		nd->msgs[i].used = false;
	nd->inflight = 0;
}

/* A round trip measured on a message sent once: SRTT, RTTVAR and the RTO of new messages. */
static void rtt_sample(struct netdump *nd, uint64_t us)
{
	uint32_t r = us > 1000000 ? 1000000 : (uint32_t)us, rto;

	if (!nd->srtt_us) {
		nd->srtt_us = r ? r : 1;
		nd->rttvar_us = r / 2;
	} else {
		uint32_t d = r > nd->srtt_us ? r - nd->srtt_us : nd->srtt_us - r;

		nd->rttvar_us = (3 * nd->rttvar_us + d) / 4;
		nd->srtt_us = (7 * nd->srtt_us + r) / 8;
		if (!nd->srtt_us)
			nd->srtt_us = 1;
	}
	rto = (nd->srtt_us + 4 * nd->rttvar_us + 999) / 1000;
	nd->rto_ms = rto < ND_RTO_MIN_MS ? ND_RTO_MIN_MS : rto > ND_RTO_MAX_MS ? ND_RTO_MAX_MS : rto;
}

/* An ACK: the message in flight it names leaves the window; anything else is dropped. */
static void take_ack(struct netdump *nd)
{
	for (int i = 0; i < NETDUMP_WINDOW_MAX; i++) {
		struct nd_msg *m = &nd->msgs[i];

		if (!m->used || m->seq != nd->in_seq || m->type != nd->in_type ||
		    memcmp(nd->in_dump_id, dump_id_of(nd, m->type), 16) != 0)
			continue;
		if ((m->type == ND_QUERY || m->type == ND_HERALD) && !nd->in_status) {
			if (nd->in_payload != ND_ROOM)
				break;	/* no room fields: not an answer */
			nd->room_part_bytes = get_be64(nd->in_room);
			nd->room_block = get_be32(nd->in_room + 8);
			nd->room_max_data = get_be32(nd->in_room + 12);
			nd->room_window = get_be32(nd->in_room + 16);
		}
		if (nd->in_status && !nd->refused) {
			nd->refused = nd->in_status;
			failed_at(nd, m);
		}
		if (!m->resent)
			rtt_sample(nd, tsc_to_us(rdtsc() - m->first));
		m->used = false;
		nd->inflight--;
		nd->acks++;
		return;
	}
	nd->duplicates++;
}

/* Take one frame, waiting at most `ms`, and act on it: 0, ETIMEDOUT when none came, or the
 * NIC's error. */
static int receive(struct netdump *nd, uint32_t ms)
{
	struct iovec iov = { nd->rx, sizeof(nd->rx) };
	struct uio uio = { .uio_iov = &iov, .uio_iovcnt = 1, .uio_resid = sizeof(nd->rx) };
	int err = nd->nic.dddump(&nd->nic, &uio, DUMPREAD, (void *)(uintptr_t)ms);

	if (err == EMSGSIZE) {
		nd->dropped++;
		return 0;
	}
	if (err)
		return err;
	switch (run_unprivileged(parse_here, (uintptr_t)nd, sizeof(nd->rx) - uio.uio_resid, 0)) {
	case RX_ARP_REQUEST:
		nd->arp_answers++;
		return send_arp(nd, ARP_OP_REPLY, nd->in.arp_sender_mac, nd->in.arp_sender_mac,
				nd->in.arp_sender_ip);
	case RX_ARP_REPLY:
		memcpy(nd->server.mac, nd->in.arp_sender_mac, ETHER_ADDR_LEN);
		nd->arp_answered = true;
		return 0;
	case RX_ACK:
		take_ack(nd);
		return 0;
	default:
		nd->dropped++;
		return 0;
	}
}

/* Receive until `deadline` (TSC) or until *flag == until (what receiving sets or clears): 0 or
 * the NIC's error. */
static int receive_until(struct netdump *nd, uint64_t deadline, const bool *flag, bool until)
{
	while (*flag != until && !deadline_passed(deadline)) {
		int err = receive(nd, ms_until(deadline));

		if (err && err != ETIMEDOUT)
			return err;
	}
	return 0;
}

/* The server's MAC: ARP requests, ND_ARP_TRIES of them ND_ARP_GAP_MS apart. 0 or ETIMEDOUT. */
static int arp_server(struct netdump *nd)
{
	static const uint8_t zero_mac[ETHER_ADDR_LEN];

	nd->arp_answered = false;
	for (int i = 0; i < ND_ARP_TRIES && !nd->arp_answered; i++) {
		int err = send_arp(nd, ARP_OP_REQUEST, inet_broadcast_mac, zero_mac, nd->server.ip);

		if (!err)
			err = receive_until(nd, deadline_after_ms(ND_ARP_GAP_MS), &nd->arp_answered, true);
		if (err)
			return err;
	}
	return nd->arp_answered ? 0 : ETIMEDOUT;
}

static struct nd_msg *new_msg(struct netdump *nd, uint8_t type, uint32_t seq)
{
	for (int i = 0; i < NETDUMP_WINDOW_MAX; i++) {
		struct nd_msg *m = &nd->msgs[i];

		if (m->used)
			continue;
		*m = (struct nd_msg){ .used = true, .type = type, .seq = seq,
				      .rto_ms = nd->rto_ms ? nd->rto_ms : ND_RTO_FIRST_MS };
		nd->inflight++;
		return m;
	}
	return 0;	/* never: inflight <= window <= NETDUMP_WINDOW_MAX */
}

/* Send a new message and start its clocks. */
static int launch(struct netdump *nd, struct nd_msg *m)
{
	m->first = rdtsc();
	m->next = m->first + tsc_from_us(m->rto_ms * 1000ull);
	if (m->next < nd->soonest)
		nd->soonest = m->next;
	return transmit(nd, m);
}

/*
 * The messages due: ETIMEDOUT for one unacknowledged longer than the I/O timeout since it was
 * first sent, else the retransmission of each whose RTO passed (RTO doubled, up to 1 s); and
 * the next time anything is due (nd->soonest).
 */
static int retransmit_due(struct netdump *nd, uint64_t now, uint64_t timeout)
{
	nd->soonest = ~0ull;
	for (int i = 0; i < NETDUMP_WINDOW_MAX; i++) {
		struct nd_msg *m = &nd->msgs[i];
		int err;

		if (!m->used)
			continue;
		if (now - m->first > timeout) {
			printf("netdump: message seq %u (type %u, offset %llu) unacknowledged for %u ms\n",
			       m->seq, m->type, (unsigned long long)m->offset, nd->iotimeout_ms);
			failed_at(nd, m);
			return ETIMEDOUT;
		}
		if ((int64_t)(now - m->next) >= 0) {
			m->rto_ms = m->rto_ms * 2 < ND_RTO_MAX_MS ? m->rto_ms * 2 : ND_RTO_MAX_MS;
			m->next = now + tsc_from_us(m->rto_ms * 1000ull);
			m->resent = true;
			nd->retransmits++;
			err = transmit(nd, m);
			if (err)
				return err;
		}
		if (m->next < nd->soonest)
			nd->soonest = m->next;
		if (m->first + timeout + 1 < nd->soonest)
			nd->soonest = m->first + timeout + 1;
	}
	return 0;
}

/*
 * The window: the write's DATA (nd->uio, nd->total bytes from partition offset nd->base), then
 * `ctl` (0: none; FLUSH, HERALD, FINISH) once every message before it is acknowledged. Returns
 * when all are acknowledged: 0, the status of a refusal, ETIMEDOUT, or the NIC's error. After a
 * failure nothing stays in flight (late ACKs are dropped as duplicates).
 */
static int exchange(struct netdump *nd, uint8_t ctl)
{
	uint64_t timeout = tsc_from_us(nd->iotimeout_ms * 1000ull), now;
	int err = 0;

	nd->refused = 0;
	nd->fail_offset_set = false;
	nd->soonest = ~0ull;
	if (nd->dead) {	/* the link timed out earlier in this dump: each try would wait it out again */
		nd->uio = 0;
		nd->total = nd->sent = 0;
		return ETIMEDOUT;
	}
	for (;;) {
		while (!err && nd->inflight < nd->window && nd->sent < nd->total) {
			uint64_t n = nd->total - nd->sent < nd->max_data ? nd->total - nd->sent : nd->max_data;
			struct nd_msg *m = new_msg(nd, ND_DATA, nd->next_seq++);

			m->bytes = (uint32_t)n;
			m->offset = nd->base + nd->sent;
			m->pos = nd->sent;
			nd->sent += n;
			nd->data_bytes += n;
			err = launch(nd, m);
		}
		if (!err && nd->sent == nd->total && nd->inflight == 0) {
			if (!ctl)
				break;
			err = launch(nd, new_msg(nd, ctl, nd->next_seq++));
			ctl = 0;
		}
		/* Every frame already received first: a message whose ACK waits in the ring is not
		 * due for retransmission (on a slow CPU sending the window takes longer than an RTO). */
		while (!err)
			err = receive(nd, 0);
		if (err == ETIMEDOUT)
			err = 0;
		if (!err && nd->refused)
			err = (int)nd->refused;
		if (err)
			break;
		if (nd->inflight < nd->window && nd->sent < nd->total)
			continue;	/* ACKs made room */

		now = rdtsc();
		if ((int64_t)(now - nd->soonest) >= 0)
			err = retransmit_due(nd, now, timeout);
		if (err)
			break;
		if (nd->inflight == 0)
			continue;	/* (a control message is next) */
		err = receive(nd, ms_until(nd->soonest));
		if (err == ETIMEDOUT)
			err = 0;
		if (err)
			break;
	}
	if (err)
		forget_all(nd);
	if (err == ETIMEDOUT)
		nd->dead = true;	/* until the next DUMPSTART */
	nd->uio = 0;
	nd->total = nd->sent = 0;
	return err;
}

/* ---- DUMPINIT's link: the NIC, ARP, QUERY ------------------------------------------------- */

static uint32_t max_data_for(uint32_t max_tsize, uint32_t block_size)
{
	uint32_t room = max_tsize - INET_UDP_OVERHEAD - ND_HEADER;

	return max_tsize > INET_UDP_OVERHEAD + ND_HEADER ? room / block_size * block_size : 0;
}

/* The agreed sizes from the last room the server gave; EINVAL when they do not make a dump. */
static int agree(struct netdump *nd)
{
	uint32_t b = nd->room_block;

	if (b < ND_BLOCK_MIN || b > ND_BLOCK_MAX || (b & (b - 1)) || nd->room_part_bytes < b)
		return EINVAL;
	nd->guest_max_data = max_data_for(nd->max_tsize, b);
	nd->max_data = nd->guest_max_data < nd->room_max_data ? nd->guest_max_data : nd->room_max_data;
	nd->max_data = nd->max_data / b * b;
	nd->window = nd->cfg_window < nd->room_window ? nd->cfg_window : nd->room_window;
	if (nd->window == 0)
		nd->window = 1;	/* a server that takes none in flight still takes one at a time */
	nd->nopad = testfault(TF_NET_NOPAD);
	if (testfault(TF_NET_WINDOW))
		nd->window = 2 * nd->window < NETDUMP_WINDOW_MAX ? 2 * nd->window : NETDUMP_WINDOW_MAX;
	return nd->max_data ? 0 : EINVAL;
}

/* QUERY: ND_QUERY_TRIES tries ND_QUERY_GAP_MS apart (the same bytes each time). */
static int query_server(struct netdump *nd)
{
	struct nd_msg *m;
	bool acked;
	int err = 0;

	forget_all(nd);
	nd->refused = 0;
	m = new_msg(nd, ND_QUERY, 0);
	for (int i = 0; i < ND_QUERY_TRIES && !err && m->used; i++) {
		err = transmit(nd, m);
		/* acked once take_ack freed the message */
		if (!err)
			err = receive_until(nd, deadline_after_ms(ND_QUERY_GAP_MS), &m->used, false);
	}
	acked = !m->used;
	forget_all(nd);
	if (err)
		return err;
	if (!acked)
		return ETIMEDOUT;
	return (int)nd->refused;
}

static int link_init(struct netdump *nd, struct dumpdev *dev, struct dumpio_stat *st)
{
	struct dmp_query q = { 0 };
	const char *step = "DUMPINIT";
	int err;

	err = nd->nic.dddump(&nd->nic, 0, DUMPINIT, st);
	if (err)
		goto fail;
	nd->nic_ready = true;
	step = "DUMPQUERY";
	err = nd->nic.dddump(&nd->nic, 0, DUMPQUERY, &q);
	if (!err && (!q.dumpwrite || q.min_tsize != ETHER_MIN_FRAME || q.max_tsize > ND_FRAME_BUF ||
		     q.max_tsize < ETHER_HEADER + NETDUMP_MTU_MIN))
		err = EINVAL;
	if (err)
		goto fail;
	nd->dumpwrite = q.dumpwrite;
	nd->min_tsize = q.min_tsize;
	nd->max_tsize = q.max_tsize;
	nd->window = 1;

	step = "ARP";
	err = arp_server(nd);
	if (err)
		goto fail;
	step = "QUERY";
	err = query_server(nd);
	if (!err)
		err = agree(nd);
	if (err)
		goto fail;
	nd->part_bytes = nd->room_part_bytes / nd->room_block * nd->room_block;
	nd->block_size = nd->room_block;
	dev->block_size = nd->block_size;
	dev->part_lba = 0;
	dev->part_blocks = nd->part_bytes / nd->block_size;
	dev->part_bytes = nd->part_bytes;
	dev->disk_blocks = dev->part_blocks;
	printf("netdump: server %u.%u.%u.%u:%u (%02x:%02x:%02x:%02x:%02x:%02x): partition %llu bytes, "
	       "blocks of %u, max data %u, window %u\n",
	       nd->server.ip >> 24, (nd->server.ip >> 16) & 0xff, (nd->server.ip >> 8) & 0xff,
	       nd->server.ip & 0xff, nd->server.port, nd->server.mac[0], nd->server.mac[1], nd->server.mac[2],
	       nd->server.mac[3], nd->server.mac[4], nd->server.mac[5], (unsigned long long)nd->part_bytes,
	       nd->block_size, nd->max_data, nd->window);
	return 0;

fail:
	printf("netdump: %s failed: %s\n", step, errno_name(err));
	if (nd->nic_ready)
		nd->nic.dddump(&nd->nic, 0, DUMPTERM, 0);
	nd->nic_ready = false;
	if (st) {
		memset(st, 0, sizeof(*st));
		st->error = err;
		st->request_status = 0xff;
	}
	return err;
}

/* ---- struct dumpdev_ops ---------------------------------------------------------------- */

static int nd_init(void *softc, const struct dumpdev *dev)
{
	struct netdump *nd = softc;

	if (!in_dumpstate(nd, sizeof(*nd)))
		return EFAULT;
	return pin(nd, sizeof(*nd));	/* the kernel image is pinned anyway: for the record */
}

static void nd_term(void *softc)
{
	struct netdump *nd = softc;

	unpin(nd, sizeof(*nd));
	if (nd->nic_ready)
		nd->nic.dddump(&nd->nic, 0, DUMPTERM, 0);
	nd->nic_ready = false;
}

static uint32_t nd_max_transfer(void *softc)
{
	return ND_MAX_TRANSFER;
}

static int nd_start(void *softc)
{
	struct netdump *nd = softc;
	struct dumpio_stat nst;
	uint32_t block = nd->block_size;
	uint64_t part = nd->part_bytes;
	int err;

	nd->dead = false;
	err = nd->nic.dddump(&nd->nic, 0, DUMPSTART, &nst);
	if (err)
		return err;
	forget_all(nd);
	nd->next_seq = 1;
	/* The server's MAC may have changed since boot; without an answer the old one is tried. */
	err = arp_server(nd);
	if (err == ETIMEDOUT)
		printf("netdump: no ARP reply from the server: trying its MAC from boot\n");
	else if (err)
		return err;
	err = exchange(nd, ND_HERALD);
	if (err)
		return err;
	if (nd->room_block != block)
		return EINVAL;	/* not the partition QUERY described */
	if (nd->room_part_bytes < part)
		return ENOSPC;
	err = agree(nd);
	if (err)
		return err;
	printf("netdump: dump begins: max data %u, window %u\n", nd->max_data, nd->window);
	return 0;
}

static int nd_flush(void *softc)
{
	struct netdump *nd = softc;

	if (testfault(TF_NO_FLUSH))
		return 0;	/* deliberately wrong: the server is never asked to make anything durable */
	nd->flushes++;
	return exchange(nd, ND_FLUSH);
}

static int nd_write(void *softc, const struct dumpdev *dev, const struct uio *uio, uint64_t total, bool fsync,
		    enum dumpio_op *op, uint64_t *failing_offset)
{
	struct netdump *nd = softc;
	int err = 0;

	if (total) {
		nd->uio = uio;
		nd->base = uio->uio_offset;
		nd->total = total;
		nd->sent = 0;
		err = exchange(nd, 0);
		if (err && nd->fail_offset_set)
			*failing_offset = nd->fail_offset;	/* the DATA message that failed */
	}
	if (!err && fsync) {
		*op = DUMPIO_OP_FLUSH;
		err = nd_flush(nd);
	}
	return err;
}

/* DUMPEND after the last flush: FINISH (when that flush went well), then the NIC's DUMPEND. */
static int nd_end(void *softc, bool flushed)
{
	struct netdump *nd = softc;
	int err = 0, nerr;

	if (flushed && !testfault(TF_NET_NO_FINISH))
		err = exchange(nd, ND_FINISH);
	nerr = nd->nic.dddump(&nd->nic, 0, DUMPEND, 0);
	return err ? err : nerr;
}

static void nd_status(void *softc, uint32_t *device_status, uint32_t *request_status)
{
	struct netdump *nd = softc;

	*device_status = 0;
	if (nd->refused)
		*request_status = nd->refused;	/* the server's status */
}

static const struct dumpdev_ops netdump_ops = {
	.init = nd_init,
	.term = nd_term,
	.max_transfer = nd_max_transfer,
	.start = nd_start,
	.write = nd_write,
	.flush = nd_flush,
	.end = nd_end,
	.status = nd_status,
};

/*
 * The dddump entry point: dumpdev_dddump around netdump_ops, plus what a disk does not have: at
 * the first DUMPINIT the partition comes from the server (the link: the NIC, ARP, QUERY) before
 * dumpdev_dddump checks it.
 */
static int netdump_dddump(struct dumpdev *dev, struct uio *uio, int cmd, void *arg)
{
	struct netdump *nd = dev ? dev->softc : 0;
	int err;

	if (!nd)
		return ENODEV;
	if (cmd != DUMPINIT || nd->nic_ready)
		return dumpdev_dddump(&netdump_ops, dev, uio, cmd, arg);
	err = link_init(nd, dev, arg);
	if (err)
		return err;
	err = dumpdev_dddump(&netdump_ops, dev, uio, cmd, arg);
	if (err) {
		nd->nic.dddump(&nd->nic, 0, DUMPTERM, 0);
		nd->nic_ready = false;
	}
	return err;
}

static void netdump_print_info(const void *softc)
{
	const struct netdump *nd = softc;

	printf("  netdump: %u.%u.%u.%u:%u -> server %u.%u.%u.%u:%u, frames %u..%u bytes, max data %u, window %u\n",
	       nd->self.ip >> 24, (nd->self.ip >> 16) & 0xff, (nd->self.ip >> 8) & 0xff, nd->self.ip & 0xff,
	       nd->self.port, nd->server.ip >> 24, (nd->server.ip >> 16) & 0xff, (nd->server.ip >> 8) & 0xff,
	       nd->server.ip & 0xff, nd->server.port, nd->min_tsize, nd->max_tsize, nd->max_data, nd->window);
	printf("  frames sent %llu, retransmits %llu, acks %llu, duplicates %llu, dropped %llu, "
	       "ARP answers %llu, data %llu bytes, flushes %llu\n",
	       (unsigned long long)nd->frames_sent, (unsigned long long)nd->retransmits,
	       (unsigned long long)nd->acks, (unsigned long long)nd->duplicates,
	       (unsigned long long)nd->dropped, (unsigned long long)nd->arp_answers,
	       (unsigned long long)nd->data_bytes, (unsigned long long)nd->flushes);
	if (nd->nic.print_info)
		nd->nic.print_info(nd->nic.softc);
}

int netdump_setup(struct dumpdev *dev, const struct dump_nic *nic, const struct netdump_config *cfg,
		  uint32_t iotimeout_ms, const uint8_t *dump_id)
{
	struct netdump *nd = &netdump;

	if (nd->in_use)
		return EBUSY;
	memset(nd, 0, sizeof(*nd));
	nd->in_use = true;
	nd->nic = *nic;
	memcpy(nd->self.mac, nic->mac, ETHER_ADDR_LEN);
	nd->self.ip = cfg->ip;
	nd->self.port = NETDUMP_GUEST_PORT;
	nd->server.ip = cfg->server_ip;
	nd->server.port = cfg->server_port;
	nd->cfg_window = cfg->window;
	nd->iotimeout_ms = iotimeout_ms;
	memcpy(nd->dump_id, dump_id, 16);

	dev->dddump = netdump_dddump;
	dev->softc = nd;
	dev->print_info = netdump_print_info;
	dev->read = 0;
	dev->runtime_io = 0;
	return 0;
}
