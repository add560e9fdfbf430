/*
 * virtio-blk, polled.
 *
 * Requests are a header descriptor (type, sector), data descriptors pointing straight at the
 * caller's memory (identity mapped: virtual = physical), and a one-byte status descriptor the
 * device writes. We submit, ring the doorbell, then poll the used ring against a TSC deadline
 * (the split virtqueue operations of drivers/virtio_pci.h).
 *
 * All request state is preallocated in .bss, in the dump path's state (lib/dumpstate.h): the
 * softc and the ring. A few request slots, each owning a fixed range of descriptors, a header
 * and a status byte. The dump path never allocates. A request that times
 * out is abandoned (its slot stays reserved until the device gives it back), so a later request
 * - e.g. the FAILED header - can still go out on another slot without any risk of mistaking
 * the late completion of the old one for its own.
 *
 * Outside the dump, interrupt-driven runtime I/O (dumpdev_runtime_io, for the test workload):
 * the same slots, completed from the queue's MSI-X interrupt; DUMPSTART's reset forgets them.
 */
#include "drivers/virtio_blk.h"
#include "arch/x86/io.h"
#include "arch/x86/pin.h"
#include "arch/x86/tsc.h"
#include "arch/x86/usermode.h"
#include "drivers/virtio_pci.h"
#include "dump/dumpdisk.h"
#include "lib/dumpstate.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "lib/testfault.h"

#define VIRTIO_BLK_F_SIZE_MAX	1
#define VIRTIO_BLK_F_SEG_MAX	2
#define VIRTIO_BLK_F_RO		5
#define VIRTIO_BLK_F_BLK_SIZE	6
#define VIRTIO_BLK_F_FLUSH	9

/* struct virtio_blk_config offsets */
#define CFG_CAPACITY	0
#define CFG_SIZE_MAX	8
#define CFG_SEG_MAX	12
#define CFG_BLK_SIZE	20

#define VIRTIO_BLK_T_IN		0
#define VIRTIO_BLK_T_OUT	1
#define VIRTIO_BLK_T_FLUSH	4

#define VIRTIO_BLK_S_OK		0
#define VIRTIO_BLK_S_IOERR	1
#define VIRTIO_BLK_S_UNSUPP	2
#define STATUS_UNWRITTEN	0xff	/* sentinel: the device never wrote the status byte */

#define SECTOR_SIZE		512	/* virtio sector numbers are always 512-byte units */
#define VBLK_SLOTS		4
/* The largest DUMPWRITE: 2 MiB. Measured on kvm-pvm with QEMU 7.2, a 1 GiB dump in 4 MiB
 * transfers took 2.9-6.0 s, in 2 MiB ones 1.5-1.8 s (a 4 MiB write took 14 ms submitted to completed,
 * a 2 MiB one 1.3 ms: docs/benchmarks.md); 1 MiB and 512 KiB were slower again (more requests). */
#define VBLK_MAX_TRANSFER	(2u << 20)
#define VBLK_QUEUE_SIZE		256
/* DUMP_ASYNC writes in flight at most (DUMPQUERY's max_outstanding): one slot is left for the
 * request that follows them (a flush, a header) and for a timed-out request's. */
#define VBLK_OUTSTANDING	(VBLK_SLOTS - 1)
_Static_assert(VBLK_OUTSTANDING <= DUMPDEV_MAX_OUTSTANDING, "dumpdev.c keeps them all");

struct virtio_blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

enum slot_state {
	SLOT_FREE,
	SLOT_INFLIGHT,
	SLOT_DONE,
	SLOT_ABANDONED,	/* timed out; the device still owns its descriptors */
};

struct vblk_slot {
	struct virtio_blk_req_hdr hdr;
	uint8_t status;
	uint8_t state;
	/* runtime I/O (dumpdev_runtime_io): completed by vblk_rt_intr through done */
	bool runtime;
	void (*done)(void *cookie, bool ok);
	void *cookie;
};

struct virtio_blk {
	struct virtio_pci vp;
	struct virtq vq;
	uint16_t desc_per_slot;
	uint64_t capacity_sectors;
	uint32_t block_size;
	uint32_t seg_max;
	uint32_t size_max;
	uint32_t max_data_segs;
	uint32_t max_transfer;
	uint32_t timeout_ms;
	bool read_only;
	bool has_flush;
	uint8_t last_status;	/* the dump's last request's status byte (STATUS_UNWRITTEN: none) */
	struct vblk_slot slots[VBLK_SLOTS];
	uint64_t requests, bytes, flushes, stale_completions, timeouts;
	/* runtime I/O: MSI-X entry 0 for the queue; nothing runtime from DUMPSTART on */
	uint8_t msix_cap;
	bool intr_enabled;
	uint8_t intr_vector;
	volatile bool dumping;
	uint64_t part_lba, part_blocks;	/* the dump partition (DUMPINIT): runtime I/O stays out */
	uint64_t rt_requests, rt_completions, rt_failures, interrupts, rt_dropped;
};

/* Two instances: the primary dump device and a secondary one (or a workload disk). Each owns
 * its ring; everything is static so the dump path allocates nothing. */
#define VBLK_MAX_DEVICES	2

static struct virtio_blk vblk[VBLK_MAX_DEVICES] __dumpstate;
static struct virtq_memory vblk_ring[VBLK_MAX_DEVICES] __dumpstate;
static bool vblk_in_use[VBLK_MAX_DEVICES];

static struct virtq_memory *ring_of(struct virtio_blk *d)
{
	return &vblk_ring[d - vblk];
}

static uint64_t wanted_features(void)
{
	return (1ull << VIRTIO_BLK_F_SIZE_MAX) | (1ull << VIRTIO_BLK_F_SEG_MAX) |
	       (1ull << VIRTIO_BLK_F_RO) | (1ull << VIRTIO_BLK_F_BLK_SIZE) | (1ull << VIRTIO_BLK_F_FLUSH);
}

/* Reset and full re-initialisation with fresh rings: nothing from before survives. */
static int bring_up(struct virtio_blk *d)
{
	int err;

	pci_msix_disable(d->vp.pci, d->msix_cap);	/* runtime interrupts off (config space) */
	d->intr_enabled = false;
	err = virtio_pci_reset(&d->vp);
	if (err)
		return err;
	err = virtio_pci_negotiate(&d->vp, wanted_features());
	if (err)
		return err;
	err = virtio_pci_setup_queue(&d->vp, &d->vq, 0, ring_of(d), VBLK_QUEUE_SIZE);
	if (err)
		return err;
	for (int i = 0; i < VBLK_SLOTS; i++) {
		d->slots[i].state = SLOT_FREE;
		d->slots[i].runtime = false;	/* forgotten: its done is never called */
	}
	d->desc_per_slot = d->vq.size / VBLK_SLOTS;
	if (d->desc_per_slot < 3)
		return ENOTSUP;
	virtio_pci_driver_ok(&d->vp);
	return 0;
}

static void read_config(struct virtio_blk *d)
{
	uint32_t size_page;
	uint64_t bulk;

	d->capacity_sectors = virtio_pci_cfg_read64(&d->vp, CFG_CAPACITY);
	d->block_size = SECTOR_SIZE;
	if (virtio_pci_has_feature(&d->vp, VIRTIO_BLK_F_BLK_SIZE))
		d->block_size = virtio_pci_cfg_read32(&d->vp, CFG_BLK_SIZE);
	d->size_max = 0xfffff000u;	/* a descriptor's length is 32 bits */
	if (virtio_pci_has_feature(&d->vp, VIRTIO_BLK_F_SIZE_MAX)) {
		uint32_t v = virtio_pci_cfg_read32(&d->vp, CFG_SIZE_MAX);

		if (v)
			d->size_max = v;
	}
	d->seg_max = d->desc_per_slot - 2;
	if (virtio_pci_has_feature(&d->vp, VIRTIO_BLK_F_SEG_MAX)) {
		uint32_t v = virtio_pci_cfg_read32(&d->vp, CFG_SEG_MAX);

		if (v)
			d->seg_max = v;
	}
	d->max_data_segs = d->seg_max < (uint32_t)d->desc_per_slot - 2 ? d->seg_max
								       : (uint32_t)d->desc_per_slot - 2;
	d->read_only = virtio_pci_has_feature(&d->vp, VIRTIO_BLK_F_RO);
	d->has_flush = virtio_pci_has_feature(&d->vp, VIRTIO_BLK_F_FLUSH);

	/*
	 * Largest transfer: 2 MiB, unless the device's segment limits are tighter. Keep one
	 * segment spare for a separate tail buffer and one for an unaligned split, and stay a
	 * multiple of the page (and so of the block size).
	 */
	size_page = d->size_max & ~4095u;
	if (size_page == 0)
		size_page = 4096;
	bulk = (uint64_t)(d->max_data_segs > 2 ? d->max_data_segs - 2 : 1) * size_page;
	d->max_transfer = bulk < VBLK_MAX_TRANSFER ? (uint32_t)bulk : VBLK_MAX_TRANSFER;
	d->max_transfer &= ~4095u;
	if (d->max_transfer < d->block_size)
		d->max_transfer = d->block_size;
}

int virtio_blk_attach(struct pci_dev *pci, uint32_t io_timeout_ms, struct virtio_blk **out)
{
	struct virtio_blk *d = 0;
	int err, n;

	for (n = 0; n < VBLK_MAX_DEVICES && !d; n++)
		if (!vblk_in_use[n])
			d = &vblk[n];
	if (!d)
		return EBUSY;
	memset(d, 0, sizeof(*d));
	d->timeout_ms = io_timeout_ms;
	err = virtio_pci_attach(&d->vp, pci);
	if (err)
		return err;
	err = bring_up(d);
	if (err)
		return err;
	read_config(d);
	if (d->block_size < SECTOR_SIZE || d->block_size > 4096 || (d->block_size & (d->block_size - 1)))
		return ENOTSUP;
	vblk_in_use[d - vblk] = true;
	*out = d;
	return 0;
}

/* Consume every used entry the device has published. */
static void reap_completions(struct virtio_blk *d)
{
	uint32_t id;

	while (virtq_next_used(&d->vq, &id)) {
		uint32_t slot = id / d->desc_per_slot;

		if (id % d->desc_per_slot || slot >= VBLK_SLOTS) {
			d->stale_completions++;
			continue;
		}
		if (d->slots[slot].state == SLOT_INFLIGHT)
			d->slots[slot].state = SLOT_DONE;
		else if (d->slots[slot].state == SLOT_ABANDONED)
			d->slots[slot].state = SLOT_FREE;	/* late completion of a timed-out request */
		else
			d->stale_completions++;
	}
}

/*
 * Post one request: a free slot's descriptors, the ring entry, the doorbell (with `ring`).
 * `iov` may be NULL for FLUSH. Returns the slot, or -EBUSY (every slot abandoned) or -EINVAL
 * (more segments than the device takes).
 */
static int submit_request(struct virtio_blk *d, uint32_t type, uint64_t sector,
			  const struct iovec *iov, int iovcnt, bool ring)
{
	struct virtq_chain ch;
	struct vblk_slot *s = 0;
	uint32_t data_segs = 0;
	bool device_writes_data = type == VIRTIO_BLK_T_IN;
	int slot;

	reap_completions(d);
	/* A DONE slot's completion is not consumed yet: its waiter still needs it. */
	for (slot = 0; slot < VBLK_SLOTS; slot++)
		if (d->slots[slot].state == SLOT_FREE) {
			s = &d->slots[slot];
			break;
		}
	if (!s)
		return -EBUSY;

	s->hdr.type = type;
	s->hdr.reserved = 0;
	s->hdr.sector = sector;
	s->status = STATUS_UNWRITTEN;
	/* header, data (max_data_segs <= desc_per_slot - 2), status: the slot's range holds it */
	virtq_chain_begin(&ch, &d->vq, (uint16_t)(slot * d->desc_per_slot), d->desc_per_slot);
	virtq_chain_add(&ch, (uintptr_t)&s->hdr, sizeof(s->hdr), false);

	for (int i = 0; i < iovcnt; i++) {
		uintptr_t p = (uintptr_t)iov[i].iov_base;
		uint64_t left = iov[i].iov_len;

		while (left) {
			uint32_t len = left < d->size_max ? (uint32_t)left : d->size_max;

			if (++data_segs > d->max_data_segs)
				return -EINVAL;
			virtq_chain_add(&ch, p, len, device_writes_data);
			p += len;
			left -= len;
		}
	}
	virtq_chain_add(&ch, (uintptr_t)&s->status, 1, true);

	s->state = SLOT_INFLIGHT;
	if (ring)
		virtq_chain_submit(&d->vp, &ch);
	else
		virtq_chain_publish(&ch);	/* testfault=async-batch: the next doorbell takes it along */
	d->requests++;
	return slot;
}

struct vblk_wait {
	struct virtio_blk *d;
	const struct vblk_slot *s;
};

/* virtq_poll_used's question: is the slot's request back? */
static bool slot_back(void *arg)
{
	struct vblk_wait *w = arg;

	reap_completions(w->d);
	return w->s->state == SLOT_DONE;
}

/* A request back from the device: its status, its slot free. 0 or EIO. */
static int take_status(struct vblk_slot *s, uint8_t *status_out)
{
	rmb();	/* the status byte is read after the completion was seen */
	*status_out = READ_ONCE(s->status);
	s->state = SLOT_FREE;
	return *status_out == VIRTIO_BLK_S_OK ? 0 : EIO;
}

/*
 * Poll until the device gives the slot's request back, against a TSC deadline. Returns 0, EIO
 * (device said no, or needs reset) or ETIMEDOUT; the device's status byte in *status_out.
 */

static int wait_request(struct virtio_blk *d, int slot, uint8_t *status_out)
{
	struct vblk_slot *s = &d->slots[slot];
	struct vblk_wait w = { d, s };
	int err = virtq_poll_used(&d->vp, deadline_after_ms(d->timeout_ms), slot_back, &w);

	if (err) {
		s->state = SLOT_ABANDONED;
		if (err == ETIMEDOUT)
			d->timeouts++;
		return err;
	}
	return take_status(s, status_out);
}

/*
 * One request, start to finish. For reads the device writes the data buffers. Returns 0, EIO,
 * ETIMEDOUT, EBUSY (every slot abandoned), or EINVAL (more segments than the device takes).
 */
static int do_request(struct virtio_blk *d, uint32_t type, uint64_t sector,
		      const struct iovec *iov, int iovcnt, uint8_t *status_out)
{
	int slot;

	*status_out = STATUS_UNWRITTEN;
	slot = submit_request(d, type, sector, iov, iovcnt, true);
	if (slot < 0)
		return -slot;
	return wait_request(d, slot, status_out);
}

/*
 * testfault=no-wait (deliberately wrong): post the request and return as if it were done; a
 * slot is reused once the device has given it back (waiting for that, boundedly, is all the
 * waiting there is).
 */
static int post_request_only(struct virtio_blk *d, uint32_t type, uint64_t sector,
			     const struct iovec *iov, int iovcnt)
{
	uint64_t deadline = deadline_after_ms(d->timeout_ms);
	int slot;

	/* Nobody waits for what this posted: a request given back is free, one in flight will be. */
	while ((slot = submit_request(d, type, sector, iov, iovcnt, true)) == -EBUSY && !deadline_passed(deadline)) {
		for (int i = 0; i < VBLK_SLOTS; i++) {
			if (d->slots[i].state == SLOT_DONE)
				d->slots[i].state = SLOT_FREE;
			else if (d->slots[i].state == SLOT_INFLIGHT)
				d->slots[i].state = SLOT_ABANDONED;	/* freed when it comes back */
		}
		cpu_relax();
	}
	if (slot < 0)
		return -slot;
	/* Nobody will wait for it: its slot is free again once the device gives it back, as a
	 * timed-out request's, so the DUMP_ASYNC writes that follow still find slots. */
	if (d->slots[slot].state == SLOT_INFLIGHT)
		d->slots[slot].state = SLOT_ABANDONED;
	return 0;
}

int virtio_blk_read(struct virtio_blk *d, uint64_t lba, void *buf, uint32_t nblocks)
{
	uint32_t per_block = d->block_size / SECTOR_SIZE;
	uint8_t status;

	while (nblocks) {
		uint32_t n = d->max_transfer / d->block_size;
		struct iovec iov;

		if (n > nblocks)
			n = nblocks;
		if (lba + n > virtio_blk_capacity_blocks(d))
			return EINVAL;
		iov.iov_base = buf;
		iov.iov_len = (size_t)n * d->block_size;
		int err = do_request(d, VIRTIO_BLK_T_IN, lba * per_block, &iov, 1, &status);
		if (err)
			return err;
		lba += n;
		nblocks -= n;
		buf = (char *)buf + iov.iov_len;
	}
	return 0;
}

static int do_flush(struct virtio_blk *d, uint8_t *status)
{
	int err;

	*status = STATUS_UNWRITTEN;
	if (!d->has_flush)
		return 0;	/* no volatile cache to flush: writes are durable on completion */
	if (testfault(TF_NO_FLUSH))
		return 0;	/* deliberately wrong: the write cache is never flushed */
	d->flushes++;
	err = do_request(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, status);
	return err;
}

uint32_t virtio_blk_block_size(const struct virtio_blk *d) { return d->block_size; }
uint64_t virtio_blk_capacity_blocks(const struct virtio_blk *d)
{
	return d->capacity_sectors / (d->block_size / SECTOR_SIZE);
}
const struct pci_dev *virtio_blk_pci(const struct virtio_blk *d) { return d->vp.pci; }

void virtio_blk_print_info(const void *softc)
{
	const struct virtio_blk *d = softc;

	printf("  virtio-blk %02x:%02x.%x: %llu blocks of %u bytes, queue %u, seg_max %u, size_max %u%s%s\n",
	       d->vp.pci->bus, d->vp.pci->dev, d->vp.pci->fn,
	       (unsigned long long)virtio_blk_capacity_blocks(d), d->block_size, d->vq.size, d->seg_max,
	       d->size_max, d->has_flush ? ", flush" : "", d->read_only ? ", read-only" : "");
	printf("  max transfer %u bytes, I/O timeout %u ms, device status 0x%02x\n", d->max_transfer,
	       d->timeout_ms, virtio_pci_status(&d->vp));
	printf("  requests %llu, bytes %llu, flushes %llu, timeouts %llu, stale completions %llu\n",
	       (unsigned long long)d->requests, (unsigned long long)d->bytes,
	       (unsigned long long)d->flushes, (unsigned long long)d->timeouts,
	       (unsigned long long)d->stale_completions);
	if (d->rt_requests)
		printf("  runtime I/O: MSI-X vector 0x%02x%s; requests %llu, completed %llu, failed %llu, "
		       "interrupts %llu, dropped %llu\n",
		       d->intr_vector, d->intr_enabled ? "" : " (off)", (unsigned long long)d->rt_requests,
		       (unsigned long long)d->rt_completions, (unsigned long long)d->rt_failures,
		       (unsigned long long)d->interrupts, (unsigned long long)d->rt_dropped);
}

/*
 * DUMPINIT pins what DUMPWRITE touches besides the kernel image (which is always pinned):
 * the device's registers - and, for the record, its state and ring. DUMPTERM unpins them.
 * While the dump runs (arch/x86/pin.h) nothing else is mapped.
 */
static int pin_dump_path(struct virtio_blk *d)
{
	int err;

	err = pin(d, sizeof(*d));
	if (err)
		return err;
	err = pin(ring_of(d), sizeof(*ring_of(d)));
	if (!err) {
		err = virtio_pci_pin_registers(&d->vp);
		if (err)
			unpin(ring_of(d), sizeof(*ring_of(d)));
	}
	if (err)
		unpin(d, sizeof(*d));
	return err;
}

static void unpin_dump_path(struct virtio_blk *d)
{
	virtio_pci_unpin_registers(&d->vp);
	unpin(ring_of(d), sizeof(*ring_of(d)));
	unpin(d, sizeof(*d));
}

/*
 * The deliberately wrong DUMPWRITEs of testfault=no-wait and testfault=early-flush (lib/testfault.h):
 * no-wait posts a write that asks for a flush (the headers, the last writes of the dump) and its
 * flush and returns without waiting for the device;
 * early-flush posts the flush before the write has completed (before it is even posted), so the
 * flush does not cover it.
 */
static int dump_write_wrongly(struct virtio_blk *d, uint64_t sector, const struct uio *uio, uint64_t total)
{
	bool flush = d->has_flush;
	int err = 0;

	if (testfault(TF_NO_WAIT)) {
		if (total)
			err = post_request_only(d, VIRTIO_BLK_T_OUT, sector, uio->uio_iov, uio->uio_iovcnt);
		if (!err && flush)
			err = post_request_only(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
	} else {
		/* The flush goes on the ring first: the device takes it before the write, so it can
		 * never cover it (posting it right behind the write loses the same race, only not
		 * every time). */
		int f = submit_request(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, true);
		int w = f < 0 ? f : submit_request(d, VIRTIO_BLK_T_OUT, sector, uio->uio_iov, uio->uio_iovcnt, true);

		err = w < 0 ? -w : wait_request(d, w, &d->last_status);
		if (f >= 0) {
			uint8_t flush_status;
			int ferr = wait_request(d, f, &flush_status);

			err = err ? err : ferr;
		} else if (!err) {
			err = -f;
		}
	}
	return err;
}

/* The dump path's device work (dump/dumpdev.h, struct dumpdev_ops); dumpdev_dddump() runs the
 * protocol around it. */
static int dump_init(void *softc, const struct dumpdev *dev)
{
	struct virtio_blk *d = softc;

	if (d->read_only)
		return EROFS;
	/* Everything the dump path writes is static and the dump path's state: the one part of
	 * the kernel image the dump does not compare with memory at the crash. */
	if (!in_dumpstate(d, sizeof(*d)) || !in_dumpstate(ring_of(d), sizeof(*ring_of(d))))
		return EFAULT;
	d->part_lba = dev->part_lba;
	d->part_blocks = dev->part_blocks;
	return pin_dump_path(d);
}

static void dump_term(void *softc)
{
	unpin_dump_path(softc);
}

static uint32_t dump_max_transfer(void *softc)
{
	return ((struct virtio_blk *)softc)->max_transfer;
}

static int dump_start(void *softc)
{
	struct virtio_blk *d = softc;
	int in_flight = 0;

	/* Whatever the device was doing is dropped, never resumed: a reset discards it and fresh
	 * rings guarantee no old completion can be mistaken for ours. Runtime requests are
	 * forgotten (bring_up), their done never called. */
	d->dumping = true;
	d->last_status = STATUS_UNWRITTEN;
	for (int i = 0; i < VBLK_SLOTS; i++)
		if (d->slots[i].runtime && d->slots[i].state != SLOT_FREE)
			in_flight++;
	if (in_flight)
		printf("virtio-blk: %d runtime requests in flight at the crash: dropped by the reset\n", in_flight);
	d->rt_dropped += in_flight;
	return bring_up(d);
}

static int dump_flush(void *softc)
{
	struct virtio_blk *d = softc;

	return do_flush(d, &d->last_status);
}

static int dump_write(void *softc, const struct dumpdev *dev, const struct uio *uio, uint64_t total, bool fsync,
		      enum dumpio_op *op, uint64_t *failing_offset)
{
	struct virtio_blk *d = softc;
	uint64_t sector = (dev->part_lba * d->block_size + uio->uio_offset) / SECTOR_SIZE;
	int err;

	if (fsync && (testfault(TF_NO_WAIT) || (testfault(TF_EARLY_FLUSH) && total))) {
		err = dump_write_wrongly(d, sector, uio, total);
	} else {
		err = total ? do_request(d, VIRTIO_BLK_T_OUT, sector, uio->uio_iov, uio->uio_iovcnt, &d->last_status)
			    : 0;
		if (!err && fsync) {
			*op = DUMPIO_OP_FLUSH;
			err = dump_flush(d);
		}
	}
	if (!err)
		d->bytes += total;
	return err;
}

/* ---- several writes in flight (DUMP_ASYNC, dump/dumpdev.h) ---- */

static uint32_t dump_outstanding(void *softc)
{
	(void)softc;
	return VBLK_OUTSTANDING;
}

/*
 * A DUMP_ASYNC write: posted on a free slot, the slot its tag (dumpdev.c waits for the oldest
 * first when VBLK_OUTSTANDING are in flight, so one is free). testfault=async-batch (deliberately
 * wrong): the write is published without the doorbell; it rides on the next request's. After
 * the crash the write is built and published in ring 3 and only its doorbell rung in ring 0;
 * its wait first looks in ring 3 whether it is back (docs/guest.md, "Ring 3": on kvm-pvm each
 * write's request and wait were some 0.2 ms of emulated ring 0). Both only compute on memory.
 */
static uint64_t post_here(uint64_t softc, uint64_t uio_p, uint64_t sector)
{
	const struct uio *uio = (const struct uio *)(uintptr_t)uio_p;

	return (uint64_t)(int64_t)submit_request((struct virtio_blk *)(uintptr_t)softc, VIRTIO_BLK_T_OUT, sector,
						 uio->uio_iov, uio->uio_iovcnt, false);
}

static int dump_post(void *softc, const struct dumpdev *dev, const struct uio *uio, uint64_t total,
		     uint32_t *tag)
{
	struct virtio_blk *d = softc;
	uint64_t sector = (dev->part_lba * d->block_size + uio->uio_offset) / SECTOR_SIZE;
	int slot = (int)(int64_t)run_unprivileged_after_crash(post_here, (uintptr_t)d, (uintptr_t)uio, sector);

	if (slot < 0)
		return -slot;
	/* testfault=async-batch: no doorbell; the next post's (or a wait's) takes it along */
	if (!testfault(TF_ASYNC_BATCH))
		virtio_pci_notify(&d->vp, &d->vq);
	*tag = (uint32_t)slot;
	d->bytes += total;
	return 0;
}

/* dump_wait's look (ring 3): the write's status if it is back, else EAGAIN (nothing changed). */
static uint64_t wait_here(uint64_t softc, uint64_t tag, uint64_t unused)
{
	struct virtio_blk *d = (struct virtio_blk *)(uintptr_t)softc;

	(void)unused;
	reap_completions(d);
	return d->slots[tag].state == SLOT_DONE ? (uint64_t)take_status(&d->slots[tag], &d->last_status) : EAGAIN;
}

/* The DUMP_ASYNC write on slot `tag`, back from the device: its slot is free again. */
static int dump_wait(void *softc, uint32_t tag)
{
	struct virtio_blk *d = softc;
	int err;

	if (tag >= VBLK_SLOTS || d->slots[tag].state == SLOT_FREE)
		return EINVAL;
	if (testfault(TF_ASYNC_BATCH))
		virtio_pci_notify(&d->vp, &d->vq);	/* what is waited for must have been rung */
	else if ((err = (int)run_unprivileged_after_crash(wait_here, (uintptr_t)d, tag, 0)) != EAGAIN)
		return err;
	return wait_request(d, (int)tag, &d->last_status);
}

static void dump_status(void *softc, uint32_t *device_status, uint32_t *request_status)
{
	struct virtio_blk *d = softc;

	*device_status = virtio_pci_status(&d->vp);
	*request_status = d->last_status;
}

static const struct dumpdev_ops virtio_blk_dump_ops = {
	.init = dump_init,
	.term = dump_term,
	.max_transfer = dump_max_transfer,
	.start = dump_start,
	.write = dump_write,
	.flush = dump_flush,
	.outstanding = dump_outstanding,
	.post = dump_post,
	.wait = dump_wait,
	.status = dump_status,
};

int virtio_blk_dddump(struct dumpdev *dev, struct uio *uio, int cmd, void *arg)
{
	return dumpdev_dddump(&virtio_blk_dump_ops, dev, uio, cmd, arg);
}

/* ---- runtime I/O (dumpdev_runtime_io) ------------------------------------------------------ */

/*
 * Interrupt-driven requests outside the dump (the test workload): submit takes a free slot
 * (submit_request) and returns; the queue signals MSI-X entry 0 and vblk_rt_intr completes the
 * runtime slots the device gave back (a polled request's reap may have seen them first: they
 * wait DONE for the handler). From DUMPSTART on nothing runtime goes out or completes: the
 * reset forgets the slots.
 */

/* common configuration registers for MSI-X routing (the transport sets NO_VECTOR) */
#define COMMON_MSIX		0x10
#define COMMON_Q_SELECT		0x16
#define COMMON_Q_MSIX		0x1a

static int vblk_rt_intr_enable(void *softc, uint8_t vector)
{
	struct virtio_blk *d = softc;
	int err;

	if (d->dumping)
		return EINVAL;
	if (!d->msix_cap)
		d->msix_cap = pci_find_cap(d->vp.pci, PCI_CAP_ID_MSIX, 0);
	err = pci_msix_route(d->vp.pci, d->msix_cap, 0, vector);
	if (err)
		return err;
	mmio_write16(d->vp.common + COMMON_MSIX, VIRTIO_MSI_NO_VECTOR);
	mmio_write16(d->vp.common + COMMON_Q_SELECT, 0);
	mmio_write16(d->vp.common + COMMON_Q_MSIX, 0);
	if (mmio_read16(d->vp.common + COMMON_Q_MSIX) != 0) {
		pci_msix_disable(d->vp.pci, d->msix_cap);
		return EIO;
	}
	/* Ask for interrupts on the queue (the transport set NO_INTERRUPT). */
	WRITE_ONCE(d->vq.mem->avail.flags, 0);
	mb();
	d->intr_vector = vector;
	d->intr_enabled = true;
	return 0;
}

/* Crash time, first thing: the queue is told not to interrupt (a store to its avail ring). */
static void vblk_rt_intr_mute(void *softc)
{
	struct virtio_blk *d = softc;

	WRITE_ONCE(d->vq.mem->avail.flags, VIRTQ_AVAIL_F_NO_INTERRUPT);
	mb();
}

/* The vector's handler (IF = 0): complete the runtime requests the device gave back. */
static void vblk_rt_intr(void *softc)
{
	struct virtio_blk *d = softc;

	d->interrupts++;
	if (d->dumping)
		return;
	reap_completions(d);
	for (int i = 0; i < VBLK_SLOTS; i++) {
		struct vblk_slot *s = &d->slots[i];
		void (*done)(void *cookie, bool ok);
		void *cookie;
		bool ok;

		if (!s->runtime || s->state != SLOT_DONE)
			continue;
		rmb();	/* the status byte is read after the completion was seen */
		ok = READ_ONCE(s->status) == VIRTIO_BLK_S_OK;
		done = s->done;
		cookie = s->cookie;
		s->runtime = false;
		s->state = SLOT_FREE;
		if (ok)
			d->rt_completions++;
		else
			d->rt_failures++;
		done(cookie, ok);	/* may submit again */
	}
}

static int vblk_rt_submit(void *softc, bool write, uint64_t lba, uint32_t nblocks, void *buf,
			  void (*done)(void *cookie, bool ok), void *cookie)
{
	struct virtio_blk *d = softc;
	uint64_t bytes = (uint64_t)nblocks * d->block_size, cap = virtio_blk_capacity_blocks(d), flags;
	struct iovec iov = { buf, (size_t)bytes };
	int slot;

	if (d->dumping || !d->intr_enabled)
		return EINVAL;
	if (!done || !buf || nblocks == 0 || lba >= cap || nblocks > cap - lba || bytes > d->max_transfer)
		return EINVAL;
	if (d->part_blocks && lba < d->part_lba + d->part_blocks && d->part_lba < lba + nblocks)
		return EINVAL;	/* never the dump partition */
	if (write && d->read_only)
		return EROFS;
	flags = irq_save();
	slot = submit_request(d, write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN,
			      lba * (d->block_size / SECTOR_SIZE), &iov, 1, true);
	if (slot < 0) {
		irq_restore(flags);
		return -slot;	/* EBUSY: no free slot now */
	}
	/* IF = 0: the handler cannot look at the slot before it is marked runtime. */
	d->slots[slot].done = done;
	d->slots[slot].cookie = cookie;
	d->slots[slot].runtime = true;
	d->rt_requests++;
	irq_restore(flags);
	return 0;
}

static const struct dumpdev_runtime_io vblk_runtime_io = {
	.intr_enable = vblk_rt_intr_enable,
	.intr = vblk_rt_intr,
	.intr_mute = vblk_rt_intr_mute,
	.submit = vblk_rt_submit,
};

/* dumpdev=virtio-blk[:N]: the N-th virtio-blk function in PCI order. */
static int vblk_read_blocks(void *softc, uint64_t lba, void *buf, uint32_t nblocks)
{
	return virtio_blk_read(softc, lba, buf, nblocks);
}

static int virtio_blk_dump_attach(int index, uint32_t iotimeout_ms, struct dump_disk *out)
{
	static const uint16_t ids[] = { VIRTIO_BLK_PCI_DEVICE_MODERN, VIRTIO_BLK_PCI_DEVICE_TRANSITIONAL };
	static char where[16];
	struct pci_dev *pci = pci_find(VIRTIO_PCI_VENDOR, ids, 2, index);
	struct virtio_blk *d;
	int err;

	if (!pci)
		return ENODEV;
	snprintf(where, sizeof(where), "%02x:%02x.%x", pci->bus, pci->dev, pci->fn);
	out->where = where;
	err = virtio_blk_attach(pci, iotimeout_ms, &d);
	if (err)
		return err;
	*out = (struct dump_disk){
		.softc = d, .block_size = virtio_blk_block_size(d), .nblocks = virtio_blk_capacity_blocks(d),
		.read = vblk_read_blocks, .dddump = virtio_blk_dddump, .print_info = virtio_blk_print_info,
		.runtime_io = &vblk_runtime_io, .where = where,
	};
	return 0;
}
DUMP_DISK_DRIVER("virtio-blk", virtio_blk_dump_attach);
