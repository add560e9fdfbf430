/*
 * virtio-net, polled, as a network dump NIC (dump/dumpnic.h, docs/netdump-protocol.md section 2).
 *
 * Queue 0 receives, queue 1 transmits; no control queue, no offloads, no mergeable buffers:
 * every receive buffer holds a whole frame of the largest MTU (9000) behind the 12-byte
 * struct virtio_net_hdr_v1 (VIRTIO_F_VERSION_1), and every frame sent is a chain of that
 * header (zero: no checksum offload, no GSO) and the caller's frame, which the device reads
 * where it lies (identity mapped). The softc, both rings and the receive buffers are static,
 * in the dump path's state (lib/dumpstate.h): the dump path allocates nothing.
 *
 * The device runs from attach on (that is the runtime: frames arrive into the receive ring,
 * which asks for interrupts, though no vector is ever routed and INTx is disabled; QEMU still
 * traces the notifications). The boot-time QUERY of the dump server goes over that ring.
 * DUMPSTART resets the device and rebuilds both rings with VIRTQ_AVAIL_F_NO_INTERRUPT, so
 * nothing of the runtime survives into the dump and the device never signals again.
 *
 * Transmit requests use slots of descriptors as virtio-blk's: a frame that timed out keeps its
 * slot (abandoned) until the device gives it back, so a late completion is never taken for a
 * later frame's.
 */
#include "drivers/virtio_net.h"
#include "arch/x86/io.h"
#include "arch/x86/pin.h"
#include "arch/x86/tsc.h"
#include "drivers/virtio_pci.h"
#include "dump/dumpnic.h"
#include "lib/dumpstate.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "lib/testfault.h"

#define VIRTIO_NET_F_MTU	3
#define VIRTIO_NET_F_MAC	5

/* struct virtio_net_config offsets */
#define CFG_MAC			0
#define CFG_MTU			10

#define VNET_HDR		12	/* struct virtio_net_hdr_v1 */
#define VNET_MTU_MAX		9000
#define VNET_MTU_DEFAULT	1500	/* without VIRTIO_NET_F_MTU */
#define VNET_RX_BUFS		8	/* ACKs and ARP: QEMU holds more back until one is free */
#define VNET_RX_BUF		9216	/* >= VNET_HDR + 14 + VNET_MTU_MAX */
#define VNET_TX_SLOTS		8
#define VNET_TX_QUEUE		32	/* 4 descriptors a slot: the header and up to 3 pieces */
#define VNET_MAX_DEVICES	1	/* the network dump is the primary only */

#define RXQ			0
#define TXQ			1

struct virtio_net_hdr_v1 {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t num_buffers;
};

_Static_assert(sizeof(struct virtio_net_hdr_v1) == VNET_HDR, "virtio_net_hdr_v1 is 12 bytes");
_Static_assert(VNET_RX_BUF >= VNET_HDR + ETHER_HEADER + VNET_MTU_MAX, "a receive buffer holds a whole frame");

enum tx_state {
	TX_FREE,
	TX_INFLIGHT,
	TX_DONE,
	TX_ABANDONED,	/* timed out; the device still owns its descriptors */
};

struct vnet_tx_slot {
	struct virtio_net_hdr_v1 hdr;	/* always zero */
	uint8_t state;
};

struct virtio_net {
	struct virtio_pci vp;
	struct virtq rxq, txq;
	uint16_t tx_desc_per_slot;
	uint8_t mac[ETHER_ADDR_LEN];
	uint32_t dev_mtu;		/* the device's (VIRTIO_NET_F_MTU), or 1500 */
	uint32_t mtu;			/* in use: netmtu=, capped by dev_mtu */
	uint32_t timeout_ms;
	bool dump_ready;		/* between DUMPINIT and DUMPTERM */
	bool dumping;			/* from DUMPSTART on */
	struct vnet_tx_slot tx[VNET_TX_SLOTS];
	uint64_t tx_frames, tx_bytes, tx_timeouts, rx_frames, rx_too_big, rx_bad, stale_completions;
};

/* Each device's rings and receive buffers, apart from its softc (page-aligned parts). */
struct vnet_memory {
	struct virtq_memory rx, tx;
	uint8_t rxbuf[VNET_RX_BUFS][VNET_RX_BUF] __attribute__((aligned(64)));
};

static struct virtio_net vnet[VNET_MAX_DEVICES] __dumpstate;
static struct vnet_memory vnet_mem[VNET_MAX_DEVICES] __dumpstate;
static bool vnet_in_use[VNET_MAX_DEVICES];

static struct vnet_memory *mem_of(struct virtio_net *d)
{
	return &vnet_mem[d - vnet];
}

/* Publish receive buffer `id` (its descriptor is the same number) to the device, no kick. */
static void rx_publish(struct virtio_net *d, uint16_t id)
{
	struct virtq_chain ch;

	virtq_chain_begin(&ch, &d->rxq, id, 1);
	virtq_chain_add(&ch, (uintptr_t)mem_of(d)->rxbuf[id], VNET_RX_BUF, true);
	virtq_chain_publish(&ch);
}

/*
 * Give receive buffer `id` back to the device and kick it, unless it says it needs no kick
 * (VIRTQ_USED_F_NO_NOTIFY, set by QEMU while it finds buffers: virtio_pci_notify). Every kick
 * is a VM exit, but it must come at once: QEMU, having found the ring empty, stops reading its
 * backend until kicked, and holding kicks back (one per quarter of the ring, as e1000e does
 * with RDT) left ACKs waiting there for their retransmission (40-70 of them a 32 MiB dump, half
 * the throughput).
 */
static void rx_post(struct virtio_net *d, uint16_t id)
{
	rx_publish(d, id);
	virtio_pci_notify(&d->vp, &d->rxq);
}

/*
 * Reset and full re-initialisation with fresh rings and every receive buffer posted: nothing
 * from before survives. `runtime`: the receive queue asks for interrupts (attach); otherwise
 * both queues are as virtio_pci_setup_queue leaves them (no interrupts; testfault=irq-on asks
 * for them there).
 */
static int bring_up(struct virtio_net *d, bool runtime)
{
	struct vnet_memory *m = mem_of(d);
	int err;

	err = virtio_pci_reset(&d->vp);
	if (err)
		return err;
	err = virtio_pci_negotiate(&d->vp, (1ull << VIRTIO_NET_F_MAC) | (1ull << VIRTIO_NET_F_MTU));
	if (err)
		return err;
	err = virtio_pci_setup_queue(&d->vp, &d->rxq, RXQ, &m->rx, VNET_RX_BUFS);
	if (!err)
		err = virtio_pci_setup_queue(&d->vp, &d->txq, TXQ, &m->tx, VNET_TX_QUEUE);
	if (err)
		return err;
	d->tx_desc_per_slot = d->txq.size / VNET_TX_SLOTS;
	if (d->tx_desc_per_slot < 2)
		return ENOTSUP;
	for (int i = 0; i < VNET_TX_SLOTS; i++)
		d->tx[i] = (struct vnet_tx_slot){ .state = TX_FREE };
	/* The runtime receives "interrupt-driven"; testfault=intr-unmasked (deliberately wrong)
	 * leaves the dump's receive queue so too, with IF = 0. */
	if (runtime || testfault(TF_INTR_UNMASKED))
		m->rx.avail.flags = 0;
	virtio_pci_driver_ok(&d->vp);
	for (uint16_t i = 0; i < d->rxq.size; i++)
		rx_publish(d, i);
	virtio_pci_notify(&d->vp, &d->rxq);	/* the whole ring, one kick */
	return 0;
}

static void read_config(struct virtio_net *d)
{
	uint32_t lo = virtio_pci_cfg_read32(&d->vp, CFG_MAC), hi = virtio_pci_cfg_read32(&d->vp, CFG_MAC + 4);

	for (int i = 0; i < 4; i++)
		d->mac[i] = (uint8_t)(lo >> (8 * i));
	d->mac[4] = (uint8_t)hi;
	d->mac[5] = (uint8_t)(hi >> 8);
	d->dev_mtu = VNET_MTU_DEFAULT;
	/* mtu is the u16 at 10: the upper half of the aligned word at 8 */
	if (virtio_pci_has_feature(&d->vp, VIRTIO_NET_F_MTU))
		d->dev_mtu = virtio_pci_cfg_read32(&d->vp, CFG_MTU - 2) >> 16;
	if (d->dev_mtu > VNET_MTU_MAX)
		d->dev_mtu = VNET_MTU_MAX;	/* our receive buffers */
}

/* ---- transmit -------------------------------------------------------------------------- */

static void tx_reap(struct virtio_net *d)
{
	uint32_t id;

	while (virtq_next_used(&d->txq, &id)) {
		uint32_t slot = id / d->tx_desc_per_slot;

		if (id % d->tx_desc_per_slot || slot >= VNET_TX_SLOTS) {
			d->stale_completions++;
			continue;
		}
		if (d->tx[slot].state == TX_INFLIGHT)
			d->tx[slot].state = TX_DONE;
		else if (d->tx[slot].state == TX_ABANDONED)
			d->tx[slot].state = TX_FREE;	/* late completion of a timed-out frame */
		else
			d->stale_completions++;
	}
}

struct tx_wait {
	struct virtio_net *d;
	int slot;		/* -1: waiting for any free slot */
};

/* virtq_poll_used's question: is the frame back (or, slot -1, is a slot free)? */
static bool tx_back(void *arg)
{
	struct tx_wait *w = arg;

	tx_reap(w->d);
	if (w->slot >= 0)
		return w->d->tx[w->slot].state == TX_DONE;
	for (int i = 0; i < VNET_TX_SLOTS; i++)
		if (w->d->tx[i].state == TX_FREE) {
			w->slot = i;
			return true;
		}
	return false;
}

/*
 * DUMPQUERY's dumpwrite: send one frame (uio: the whole Ethernet frame, no FCS) and return once
 * the device has taken it, bounded by the I/O timeout: 0, EINVAL, ETIMEDOUT or EIO.
 */
static int vnet_dumpwrite(struct dump_nic *nic, struct uio *uio)
{
	struct virtio_net *d = nic->softc;
	uint64_t deadline = deadline_after_ms(d->timeout_ms), sum;
	struct tx_wait w = { d, -1 };
	struct virtq_chain ch;
	int err;

	if (!d->dump_ready || !uio || uio->uio_iovcnt < 1 || !uio->uio_iov)
		return EINVAL;
	sum = iov_total(uio->uio_iov, uio->uio_iovcnt);
	if (sum != uio->uio_resid || sum < ETHER_HEADER || sum > ETHER_HEADER + d->mtu)
		return EINVAL;

	err = virtq_poll_used(&d->vp, deadline, tx_back, &w);	/* a free slot */
	if (err)
		return err;
	virtq_chain_begin(&ch, &d->txq, (uint16_t)(w.slot * d->tx_desc_per_slot), d->tx_desc_per_slot);
	virtq_chain_add(&ch, (uintptr_t)&d->tx[w.slot].hdr, VNET_HDR, false);
	for (int i = 0; i < uio->uio_iovcnt; i++)
		if (uio->uio_iov[i].iov_len &&
		    !virtq_chain_add(&ch, (uintptr_t)uio->uio_iov[i].iov_base, (uint32_t)uio->uio_iov[i].iov_len,
				     false))
			return EINVAL;	/* more pieces than a slot has descriptors */
	d->tx[w.slot].state = TX_INFLIGHT;
	virtq_chain_submit(&d->vp, &ch);

	err = virtq_poll_used(&d->vp, deadline, tx_back, &w);
	if (err) {
		d->tx[w.slot].state = TX_ABANDONED;
		if (err == ETIMEDOUT)
			d->tx_timeouts++;
		return err;
	}
	d->tx[w.slot].state = TX_FREE;
	d->tx_frames++;
	d->tx_bytes += sum;
	uio->uio_resid = 0;
	return 0;
}

/* ---- receive --------------------------------------------------------------------------- */

struct rx_wait {
	struct virtio_net *d;
	uint32_t id, len;	/* the frame's buffer and length (with the virtio-net header) */
};

/* virtq_poll_used's question: has a frame come? Buffers with nothing usable go back at once. */
static bool rx_back(void *arg)
{
	struct rx_wait *w = arg;
	struct virtio_net *d = w->d;

	while (virtq_next_used_len(&d->rxq, &w->id, &w->len)) {
		if (w->id >= d->rxq.size) {
			d->stale_completions++;
			continue;
		}
		if (w->len >= VNET_HDR + ETHER_HEADER && w->len <= VNET_RX_BUF)
			return true;
		d->rx_bad++;
		rx_post(d, (uint16_t)w->id);
	}
	return false;
}

/* DUMPREAD: the next frame, within `ms`, into uio; its buffer goes back to the device. */
static int vnet_read(struct virtio_net *d, struct uio *uio, uint32_t ms)
{
	struct rx_wait w = { d, 0, 0 };
	const uint8_t *frame;
	uint64_t left;
	int err;

	if (!d->dump_ready || !uio || uio->uio_iovcnt < 0 || (uio->uio_iovcnt && !uio->uio_iov))
		return EINVAL;
	err = virtq_poll_used(&d->vp, deadline_after_ms(ms), rx_back, &w);
	if (err)
		return err;
	rmb();	/* the frame is read after the used entry that gave it back */
	frame = mem_of(d)->rxbuf[w.id] + VNET_HDR;
	left = w.len - VNET_HDR;
	if (left > uio->uio_resid) {
		d->rx_too_big++;
		rx_post(d, (uint16_t)w.id);
		return EMSGSIZE;
	}
	iov_scatter(uio->uio_iov, uio->uio_iovcnt, 0, frame, left);	/* left <= uio_resid: all of it */
	uio->uio_resid -= left;
	rx_post(d, (uint16_t)w.id);
	d->rx_frames++;
	return 0;
}

/* ---- the NIC's dddump ------------------------------------------------------------------- */

/* DUMPINIT pins the device's registers, and for the record its state, rings and buffers. */
static int pin_dump_path(struct virtio_net *d)
{
	int err = pin(d, sizeof(*d));

	if (err)
		return err;
	err = pin(mem_of(d), sizeof(*mem_of(d)));
	if (!err) {
		err = virtio_pci_pin_registers(&d->vp);
		if (err)
			unpin(mem_of(d), sizeof(*mem_of(d)));
	}
	if (err)
		unpin(d, sizeof(*d));
	return err;
}

static void unpin_dump_path(struct virtio_net *d)
{
	virtio_pci_unpin_registers(&d->vp);
	unpin(mem_of(d), sizeof(*mem_of(d)));
	unpin(d, sizeof(*d));
}

static int failed(struct virtio_net *d, struct dumpio_stat *st, int err, enum dumpio_op op)
{
	if (st) {
		st->error = err;
		st->op = op;
		st->device_status = virtio_pci_status(&d->vp);
		st->request_status = 0xff;
	}
	return err;
}

static int vnet_dddump(struct dump_nic *nic, struct uio *uio, int cmd, void *arg)
{
	struct virtio_net *d = nic ? nic->softc : 0;
	struct dumpio_stat *st = arg;
	int err;

	if (!d)
		return ENODEV;
	if (st && (cmd == DUMPINIT || cmd == DUMPSTART || cmd == DUMPWRITE || cmd == DUMPEND))
		memset(st, 0, sizeof(*st));

	switch (cmd) {
	case DUMPINIT:
		if (d->dump_ready)
			return 0;
		if (!in_dumpstate(d, sizeof(*d)) || !in_dumpstate(mem_of(d), sizeof(*mem_of(d))))
			return failed(d, st, EFAULT, DUMPIO_OP_NONE);
		err = pin_dump_path(d);
		if (err)
			return failed(d, st, err, DUMPIO_OP_NONE);
		d->dump_ready = true;
		return 0;

	case DUMPQUERY: {
		struct dmp_query *q = arg;

		if (!d->dump_ready || !q)
			return EINVAL;
		q->min_tsize = ETHER_MIN_FRAME;
		q->max_tsize = ETHER_HEADER + d->mtu;
		q->max_outstanding = 1;	/* one frame at a time: the netdump client keeps its window */
		q->dumpwrite = vnet_dumpwrite;
		return 0;
	}

	case DUMPSTART: {
		uint32_t pending = 0;

		if (!d->dump_ready)
			return failed(d, st, EINVAL, DUMPIO_OP_RESET);
		/* IF = 0 already. What the runtime left (received frames, frames in flight) is
		 * dropped with the device's state by the reset; fresh rings follow. */
		for (uint16_t i = d->rxq.last_used_idx; i != READ_ONCE(d->rxq.mem->used.idx); i++)
			pending++;
		if (pending)
			printf("virtio-net: %u received frames left from the runtime: dropped by the reset\n",
			       pending);
		d->dumping = true;
		err = bring_up(d, false);
		return err ? failed(d, st, err, DUMPIO_OP_RESET) : 0;
	}

	case DUMPWRITE:
		err = vnet_dumpwrite(nic, uio);
		return err ? failed(d, st, err, DUMPIO_OP_WRITE) : 0;

	case DUMPREAD:
		return vnet_read(d, uio, (uint32_t)(uintptr_t)arg);

	case DUMPEND:
		/* Nothing to flush. A reset leaves the device quiet: no more DMA into our rings. */
		if (d->dumping)
			virtio_pci_reset(&d->vp);
		return 0;

	case DUMPTERM:
		if (d->dump_ready)
			unpin_dump_path(d);
		d->dump_ready = false;
		return 0;

	default:
		return EINVAL;
	}
}

static void vnet_print_info(const void *softc)
{
	const struct virtio_net *d = softc;

	printf("  virtio-net %02x:%02x.%x: mac %02x:%02x:%02x:%02x:%02x:%02x, mtu %u (device %u), "
	       "queues rx %u tx %u, device status 0x%02x\n",
	       d->vp.pci->bus, d->vp.pci->dev, d->vp.pci->fn, d->mac[0], d->mac[1], d->mac[2], d->mac[3],
	       d->mac[4], d->mac[5], d->mtu, d->dev_mtu, d->rxq.size, d->txq.size, virtio_pci_status(&d->vp));
	printf("  frames sent %llu (%llu bytes), received %llu, too big %llu, bad %llu, tx timeouts %llu,"
	       " stale completions %llu\n",
	       (unsigned long long)d->tx_frames, (unsigned long long)d->tx_bytes,
	       (unsigned long long)d->rx_frames, (unsigned long long)d->rx_too_big,
	       (unsigned long long)d->rx_bad, (unsigned long long)d->tx_timeouts,
	       (unsigned long long)d->stale_completions);
}

/* dumpdev=virtio-net[:N]: the N-th virtio-net function in PCI order. */
static int virtio_net_dump_attach(int index, uint32_t mtu, uint32_t iotimeout_ms, struct dump_nic *out)
{
	static const uint16_t ids[] = { VIRTIO_NET_PCI_DEVICE_MODERN, VIRTIO_NET_PCI_DEVICE_TRANSITIONAL };
	static char where[VNET_MAX_DEVICES][16];
	struct pci_dev *pci = pci_find(VIRTIO_PCI_VENDOR, ids, 2, index);
	struct virtio_net *d = 0;
	int n, err;

	if (!pci)
		return ENODEV;
	for (n = 0; n < VNET_MAX_DEVICES && !d; n++)
		if (!vnet_in_use[n])
			d = &vnet[n];
	if (!d)
		return EBUSY;
	n = (int)(d - vnet);
	snprintf(where[n], sizeof(where[n]), "%02x:%02x.%x", pci->bus, pci->dev, pci->fn);
	out->where = where[n];
	memset(d, 0, sizeof(*d));
	d->timeout_ms = iotimeout_ms;
	err = virtio_pci_attach(&d->vp, pci);
	if (!err)
		err = bring_up(d, true);
	if (err)
		return err;
	if (!virtio_pci_has_feature(&d->vp, VIRTIO_NET_F_MAC)) {
		virtio_pci_reset(&d->vp);
		return ENOTSUP;	/* the link knows the guest by the MAC QEMU was given */
	}
	read_config(d);
	d->mtu = mtu < d->dev_mtu ? mtu : d->dev_mtu;
	vnet_in_use[n] = true;
	*out = (struct dump_nic){
		.softc = d, .mtu = d->mtu, .dddump = vnet_dddump, .print_info = vnet_print_info,
		.where = where[n],
	};
	memcpy(out->mac, d->mac, ETHER_ADDR_LEN);
	return 0;
}
DUMP_NIC_DRIVER("virtio-net", virtio_net_dump_attach);
