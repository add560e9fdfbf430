/*
 * sd: SCSI disks, after illumos' sd(4D) as far as a dump device needs it.
 *
 * Everything here is polled through scsi_poll() except runtime I/O (dumpdev_runtime_io:
 * interrupt-driven packets with a completion callback, over the HBA's tran_intr_* hooks). The dump entry point sddump() follows the Solaris
 * dump(9E) example: partition-relative block numbers, a power-up of a stopped disk first,
 * WRITE through scsi_init_pkt/scsi_setup_cdb/scsi_poll, the `dumping` flag so a runtime
 * command that was in flight at the crash is never completed or requeued, EIO on failure.
 * sd_dddump() puts the AIX dump protocol (DUMPINIT .. DUMPTERM) on top of it.
 */
#include "scsi/sd.h"
#include "dump/dumpdisk.h"
#include "lib/testfault.h"
#include "arch/x86/cpu.h"
#include "arch/x86/tsc.h"
#include "arch/x86/usermode.h"
#include "lib/errno.h"
#include "lib/dumpstate.h"
#include "lib/printf.h"
#include "lib/string.h"

#define SD_MAX_UNITS		2
/* 2 MiB, not 4: on kvm-pvm a 1 GiB dump to virtio-scsi and to pvscsi took 5.7-7.0 s in 4 MiB
 * commands and 1.9-2.2 s in 2 MiB ones (QEMU's time per byte, see virtio_blk.c) */
#define SD_MAX_DUMP_XFER	(2u << 20)
#define SD_PAGE			4096u
#define INQUIRY_LEN		96
#define START_STOP_TIME_MS	60000	/* spinning up takes time on real disks */

#define SD_RIO_SLOTS		4	/* runtime requests in flight per unit */
/* DUMP_ASYNC writes in flight on an HBA that can (scsi_poll_post): three, as virtio-blk keeps;
 * six gained nothing there (nor, within the noise, on virtio-scsi with its writes built in ring
 * 3: crash to DONE 1.20-1.28 s against 1.25-1.35, two rounds). */
#define SD_DUMP_OUTSTANDING	3

struct sd_unit;

/* One interrupt-driven runtime request (dumpdev_runtime_io.submit). */
struct sd_rio {
	struct sd_unit *un;
	struct scsi_pkt *pkt;		/* in flight, or NULL */
	struct buf bp;			/* the packet's data, for its life */
	void (*done)(void *cookie, bool ok);
	void *cookie;
};

struct sd_unit {
	struct scsi_address addr;
	char name[64];
	/* INQUIRY */
	uint8_t dtype;
	bool removable;
	char vendor[9], product[17], revision[5];
	/* READ CAPACITY */
	uint64_t nblocks;
	uint32_t block_size;
	bool rc16;
	bool write_protected;
	bool stopped;			/* we stopped it, or it said it needs START UNIT */
	uint32_t timeout_ms;
	/* dump */
	uint64_t part_lba, part_blocks;
	uint32_t dump_max_xfer;
	uint32_t dump_outstanding;	/* DUMPQUERY's max_outstanding */
	struct sd_posted {		/* the DUMP_ASYNC writes in flight, by tag */
		struct scsi_pkt *pkt;	/* NULL: the tag is free */
		uint64_t bytes;
	} posted[SD_DUMP_OUTSTANDING];
	volatile bool dumping;		/* sticky once the dump started: no runtime command
					 * completes or requeues any more */
	/* what went wrong last */
	struct scsi_poll_stat last_failure;
	uint8_t last_failed_cdb0;
	/* statistics */
	uint64_t commands, failures, dump_writes, dump_bytes, syncs, start_units, stop_units;
	/* runtime I/O: its requests are dropped (never completed) from DUMPSTART on */
	bool rio_intr;			/* intr_enable succeeded */
	struct sd_rio rio[SD_RIO_SLOTS];
	uint64_t rio_submitted, rio_completed, rio_failed, rio_busy, rio_dropped;
};

/* The dump path's state (lib/dumpstate.h): DUMPSTART..DUMPEND update the unit. */
static struct sd_unit units[SD_MAX_UNITS] __dumpstate;
static int nunits;
static uint8_t sd_scratch[512] __attribute__((aligned(64)));

static int rio_in_flight(const struct sd_unit *un);
static void rio_forget(struct sd_unit *un);

uint32_t sd_block_size(const struct sd_unit *un) { return un->block_size; }
uint64_t sd_capacity_blocks(const struct sd_unit *un) { return un->nblocks; }
struct scsi_hba *sd_hba(const struct sd_unit *un) { return un->addr.a_hba; }

static void remember_failure(struct sd_unit *un, const struct scsi_pkt *pkt)
{
	un->failures++;
	un->last_failure = scsi_poll_last;
	un->last_failed_cdb0 = pkt->pkt_cdbp[0];
}

static bool needs_start_unit(const struct scsi_poll_stat *st)
{
	return st->sense.valid && st->sense.key == KEY_NOT_READY &&
	       st->sense.asc == ASC_LUN_NOT_READY && st->sense.ascq == ASCQ_INIT_CMD_REQUIRED;
}

/* A media command's scsi_poll outcome `err`: when the disk spun down under it, start it and run
 * the command once more. 0, or the error with un->last_failure telling why. */
static int media_cmd_result(struct sd_unit *un, struct scsi_pkt *pkt, int err)
{
	if (err && needs_start_unit(&scsi_poll_last)) {
		remember_failure(un, pkt);
		un->stopped = true;
		if (sd_start_stop(un, true) == 0)
			err = scsi_poll(pkt);
	}
	if (err)
		remember_failure(un, pkt);
	return err;
}

/*
 * One polled command with at most one small data buffer (byte-granular). *got: bytes the
 * device returned (reads). 0, or EIO with un->last_failure telling why (ENOMEM-like pool
 * exhaustion is EIO too: the dump path has its reserve, so it only happens on misuse).
 */
static int sd_simple(struct sd_unit *un, uint8_t cmd, uint64_t addr, uint32_t count, uint8_t other,
		     void *data, uint32_t len, uint32_t bflags, uint32_t time_ms, uint32_t *got)
{
	struct scsi_pkt *pkt;
	struct buf b;
	int err;

	bioinit(&b, bflags, data, len);
	pkt = scsi_init_pkt(&un->addr, len ? &b : 0, CDB_GROUP4, FLAG_NOINTR, 0, 1);
	if (!pkt)
		return EIO;
	if (!scsi_setup_cdb(pkt, cmd, addr, count, other)) {
		scsi_destroy_pkt(pkt);
		return EINVAL;
	}
	pkt->pkt_time = time_ms ? time_ms : un->timeout_ms;
	un->commands++;
	err = scsi_poll(pkt);
	if (err)
		remember_failure(un, pkt);
	if (got)
		*got = pkt->pkt_resid < pkt->pkt_datalen ? pkt->pkt_datalen - pkt->pkt_resid : 0;
	scsi_destroy_pkt(pkt);
	return err;
}

int sd_start_stop(struct sd_unit *un, bool start)
{
	int err = sd_simple(un, SCMD_START_STOP, 0, start ? 1 : 0, 0, 0, 0, 0, START_STOP_TIME_MS, 0);

	if (start)
		un->start_units++;
	else
		un->stop_units++;
	if (!err)
		un->stopped = !start;
	return err;
}

/*
 * Make sure the unit takes media commands: TEST UNIT READY (scsi_poll absorbs the UNIT
 * ATTENTION a reset leaves, and waits out "becoming ready"); START UNIT when we stopped it or
 * it asks for one (NOT READY, initializing command required) - illumos' pm_raise_power.
 */
static int sd_ready(struct sd_unit *un)
{
	int err;

	if (un->stopped) {
		err = sd_start_stop(un, true);
		if (err)
			return err;
	}
	err = sd_simple(un, SCMD_TEST_UNIT_READY, 0, 0, 0, 0, 0, 0, 0, 0);
	if (err && needs_start_unit(&un->last_failure)) {
		un->stopped = true;
		err = sd_start_stop(un, true);
		if (!err)
			err = sd_simple(un, SCMD_TEST_UNIT_READY, 0, 0, 0, 0, 0, 0, 0, 0);
	}
	return err;
}

static void copy_field(char *dst, const uint8_t *src, int n)
{
	int end = n;

	for (int i = 0; i < n; i++)
		dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? (char)src[i] : ' ';
	while (end > 0 && dst[end - 1] == ' ')
		end--;
	dst[end] = '\0';
}

static int read_capacity(struct sd_unit *un)
{
	uint32_t got = 0;
	uint64_t last;
	int err;

	memset(sd_scratch, 0, 32);
	err = sd_simple(un, SCMD_READ_CAPACITY, 0, 0, 0, sd_scratch, 8, B_READ, 0, &got);
	if (err)
		return err;
	if (got < 8)
		return EIO;
	last = scsi_get_be32(sd_scratch);
	un->block_size = scsi_get_be32(sd_scratch + 4);
	un->rc16 = false;
	if (last == 0xffffffffull) {
		/* Too big for READ CAPACITY(10): the 16-byte form has the 64-bit LBA. */
		memset(sd_scratch, 0, 32);
		err = sd_simple(un, SCMD_SVC_ACTION_IN_G4, 0, 32, 0, sd_scratch, 32, B_READ, 0, &got);
		if (err)
			return err;
		if (got < 12)
			return EIO;
		last = scsi_get_be64(sd_scratch);
		un->block_size = scsi_get_be32(sd_scratch + 8);
		un->rc16 = true;
	}
	un->nblocks = last + 1;
	return 0;
}

/* MODE SENSE(6), header only: the WP bit of the device-specific parameter. A disk that does
 * not answer is taken as writable (the first write would tell). */
static void read_write_protect(struct sd_unit *un)
{
	uint32_t got = 0;

	memset(sd_scratch, 0, 4);
	if (sd_simple(un, SCMD_MODE_SENSE, 0x3f, 4, 0, sd_scratch, 4, B_READ, 0, &got) == 0 && got >= 3)
		un->write_protected = sd_scratch[2] & 0x80;
}

int sd_attach(struct scsi_hba *hba, uint16_t target, uint16_t lun, uint32_t timeout_ms,
	      struct sd_unit **out)
{
	struct sd_unit *un;
	uint32_t got = 0;
	int err;

	if (!hba || target >= hba->max_target || lun >= hba->max_lun)
		return ENODEV;
	if (nunits == SD_MAX_UNITS)
		return EBUSY;
	un = &units[nunits];
	memset(un, 0, sizeof(*un));
	un->addr.a_hba = hba;
	un->addr.a_target = target;
	un->addr.a_lun = lun;
	un->timeout_ms = timeout_ms;
	snprintf(un->name, sizeof(un->name), "%s target %u lun %u", hba->name ? hba->name : hba->tran->tran_name,
		 target, lun);

	memset(sd_scratch, 0, INQUIRY_LEN);
	err = sd_simple(un, SCMD_INQUIRY, 0, INQUIRY_LEN, 0, sd_scratch, INQUIRY_LEN, B_READ, 0, &got);
	if (err) {
		/* Nobody answers at that address. */
		if (un->last_failure.reason == CMD_DEV_GONE || un->last_failure.reason == CMD_INCOMPLETE ||
		    un->last_failure.reason == CMD_TIMEOUT)
			return ENODEV;
		return err;
	}
	if (got < 5 || (sd_scratch[0] >> 5) != 0)	/* peripheral qualifier: no LUN here */
		return ENODEV;
	un->dtype = sd_scratch[0] & 0x1f;
	un->removable = sd_scratch[1] & 0x80;
	if (got >= 36) {
		copy_field(un->vendor, sd_scratch + 8, 8);
		copy_field(un->product, sd_scratch + 16, 16);
		copy_field(un->revision, sd_scratch + 32, 4);
	}
	if (un->dtype != 0)	/* not a direct-access block device */
		return ENOTSUP;

	err = sd_ready(un);
	if (err)
		return err;
	err = read_capacity(un);
	if (err)
		return err;
	if (un->block_size < 512 || un->block_size > 4096 || (un->block_size & (un->block_size - 1)))
		return ENOTSUP;
	/* One command must be able to carry a block of contiguous memory. */
	if (hba->limits.max_xfer < un->block_size ||
	    (uint64_t)hba->limits.max_segs * hba->limits.max_seg_len < un->block_size)
		return ENOTSUP;
	read_write_protect(un);
	nunits++;
	*out = un;
	return 0;
}

/*
 * Transfer bp at `lba` (absolute), split into as many commands as the HBA's limits need.
 * `end` is the first block the transfer may not touch: checked before every command.
 */
static int sd_rw(struct sd_unit *un, struct buf *bp, uint64_t lba, uint64_t end)
{
	bool write = bp->b_flags & B_WRITE;

	if (bp->b_bcount % un->block_size)
		return EINVAL;
	while (bp->b_done < bp->b_bcount) {
		struct scsi_pkt *pkt;
		uint64_t blk = lba + bp->b_done / un->block_size;
		uint32_t n;
		int err;

		pkt = scsi_init_pkt(&un->addr, bp, CDB_GROUP4, FLAG_NOINTR, PKT_DMA_PARTIAL, un->block_size);
		if (!pkt)
			return EIO;
		n = pkt->pkt_datalen / un->block_size;
		if (blk + n > end || blk + n < blk) {
			scsi_destroy_pkt(pkt);
			return EINVAL;
		}
		scsi_setup_cdb(pkt, write ? SCMD_WRITE_G1 : SCMD_READ_G1, blk, n, 0);
		pkt->pkt_time = un->timeout_ms;
		un->commands++;
		err = media_cmd_result(un, pkt, scsi_poll(pkt));
		if (err) {
			scsi_destroy_pkt(pkt);
			return EIO;
		}
		if (!write && pkt->pkt_resid) {
			scsi_destroy_pkt(pkt);
			return EIO;
		}
		scsi_destroy_pkt(pkt);
		bp->b_done += (uint64_t)n * un->block_size;
	}
	return 0;
}

int sd_read(struct sd_unit *un, uint64_t lba, void *buf, uint32_t nblocks)
{
	struct buf b;

	bioinit(&b, B_READ, buf, (uint64_t)nblocks * un->block_size);
	return sd_rw(un, &b, lba, un->nblocks);
}

/* The partition-relative write of the dump path. */
static int sddump_buf(struct sd_unit *un, struct buf *bp, uint64_t blkno)
{
	uint64_t nblk = bp->b_bcount / un->block_size;

	if (bp->b_bcount % un->block_size || blkno > un->part_blocks || nblk > un->part_blocks - blkno)
		return EINVAL;
	/* A disk that was stopped (or suspended) is powered up first. */
	if (un->stopped && sd_start_stop(un, true))
		return EIO;
	/* Block numbers are relative to the partition; sd_rw re-checks each command against
	 * its end. */
	return sd_rw(un, bp, un->part_lba + blkno, un->part_lba + un->part_blocks);
}

int sddump(struct sd_unit *un, void *addr, uint64_t blkno, uint32_t nblk)
{
	struct buf b;

	bioinit(&b, B_WRITE, addr, (uint64_t)nblk * un->block_size);
	un->dumping = true;
	return sddump_buf(un, &b, blkno);
}

static int sd_sync_cache(struct sd_unit *un)
{
	if (testfault(TF_NO_FLUSH))
		return 0;	/* deliberately wrong: the write cache is never flushed */
	un->syncs++;
	/* LBA 0, 0 blocks: the whole medium. */
	return sd_simple(un, SCMD_SYNCHRONIZE_CACHE, 0, 0, 0, 0, 0, 0, 0, 0);
}

/* ---- the dump protocol --------------------------------------------------------------------- */

/*
 * The largest DUMPWRITE: the HBA's max_xfer, what its scatter/gather list takes for
 * page-aligned data in up to two pieces (the writer's data plus a tail page), and 2 MiB;
 * a page multiple.
 */
static uint32_t dump_max_transfer(const struct sd_unit *un)
{
	const struct scsi_dma_limits *lim = &un->addr.a_hba->limits;
	uint64_t seg = lim->max_seg_len & ~(uint64_t)(SD_PAGE - 1);
	uint64_t max = SD_MAX_DUMP_XFER, by_sgl;

	if (seg == 0)
		by_sgl = SD_PAGE;
	else if (seg == SD_PAGE)
		by_sgl = (uint64_t)lim->max_segs * SD_PAGE;	/* page segments: exact */
	else
		by_sgl = (uint64_t)(lim->max_segs > 1 ? lim->max_segs - 1 : 1) * seg;
	if (by_sgl < max)
		max = by_sgl;
	if (lim->max_xfer < max)
		max = lim->max_xfer;
	max &= ~(uint64_t)(SD_PAGE - 1);
	if (max < SD_PAGE)
		max = SD_PAGE;	/* smaller HBAs get a page split into several commands */
	return (uint32_t)max;
}

/* The dump path's device work (dump/dumpdev.h, struct dumpdev_ops); dumpdev_dddump() runs the
 * protocol around it. */
static void dump_status(void *softc, uint32_t *device_status, uint32_t *request_status)
{
	const struct sd_unit *un = softc;
	const struct scsi_poll_stat *f = &un->last_failure;

	/* SCSI has no device status register: the transport's view of the last failed command
	 * (pkt_reason << 8 | status byte), and its sense (key << 16 | asc << 8 | ascq). */
	*device_status = (uint32_t)f->reason << 8 | f->status;
	if (f->sense.valid)
		*request_status = (uint32_t)f->sense.key << 16 | (uint32_t)f->sense.asc << 8 | f->sense.ascq;
}

static int dump_init(void *softc, const struct dumpdev *dev)
{
	struct sd_unit *un = softc;
	struct scsi_hba *hba = un->addr.a_hba;
	int err;

	if (un->write_protected)
		return EROFS;
	/* The unit, the HBA and its driver state are static, the dump path's state (in the kernel
	 * image, always pinned, and the one part of it the dump does not compare with memory at
	 * the crash); the HBA pins the registers its dump path uses. */
	if (!in_dumpstate(un, sizeof(*un)) || !in_dumpstate(hba, sizeof(*hba)) || !hba->tran->tran_quiesce)
		return EFAULT;
	if (hba->tran->tran_dump_pin) {
		err = hba->tran->tran_dump_pin(hba);
		if (err)
			return err;
	}
	un->part_lba = dev->part_lba;
	un->part_blocks = dev->part_blocks;
	un->dump_max_xfer = dump_max_transfer(un);
	un->dump_outstanding = 1;
	if (scsi_poll_can_post(hba))
		un->dump_outstanding = hba->max_polled < SD_DUMP_OUTSTANDING ? hba->max_polled : SD_DUMP_OUTSTANDING;
	return 0;
}

static void dump_term(void *softc)
{
	struct sd_unit *un = softc;
	struct scsi_hba *hba = un->addr.a_hba;

	if (hba->tran->tran_dump_unpin)
		hba->tran->tran_dump_unpin(hba);
}

static uint32_t dump_query_max(void *softc)
{
	return ((struct sd_unit *)softc)->dump_max_xfer;
}

static int dump_start(void *softc)
{
	struct sd_unit *un = softc;
	struct scsi_hba *hba = un->addr.a_hba;
	int err;

	/* From here on no runtime command completes or is requeued. */
	un->dumping = true;
	if (rio_in_flight(un))
		printf("sd: %d runtime commands in flight at the crash: dropped by the quiesce\n", rio_in_flight(un));
	err = hba->tran->tran_quiesce(hba);
	/* Whatever the interrupted kernel held (packets, bounce buffers) is ours now; the runtime
	 * requests are forgotten: their `done` is never called. */
	scsi_pkt_reclaim_all();
	rio_forget(un);
	for (int t = 0; t < SD_DUMP_OUTSTANDING; t++)
		un->posted[t].pkt = 0;
	if (err)
		return err;
	/* The quiesce may have reset the bus: take the UNIT ATTENTION, and start the disk if it
	 * was stopped. */
	return sd_ready(un) ? EIO : 0;
}

static int dump_flush(void *softc)
{
	return sd_sync_cache(softc) ? EIO : 0;
}

static int dump_write(void *softc, const struct dumpdev *dev, const struct uio *uio, uint64_t total, bool fsync,
		      enum dumpio_op *op, uint64_t *failing_offset)
{
	struct sd_unit *un = softc;
	struct buf b;
	int err;

	if (total) {
		if (!bioinit_iov(&b, B_WRITE, uio->uio_iov, uio->uio_iovcnt))
			return EINVAL;
		err = sddump_buf(un, &b, uio->uio_offset / un->block_size);
		if (err)
			return err;
		un->dump_writes++;
		un->dump_bytes += total;
	}
	*op = DUMPIO_OP_FLUSH;
	return fsync ? dump_flush(un) : 0;
}

static uint32_t dump_query_outstanding(void *softc)
{
	return ((struct sd_unit *)softc)->dump_outstanding;
}

/* dump_post's arguments and answer, across the ring-3 trip. */
struct post_args {
	struct sd_unit *un;
	const struct uio *uio;
	uint64_t total;
	uint32_t tag;
};

/* dump_post short of telling the device where the HBA can be told afterwards (tran_kick): then
 * it only computes on memory. */
static uint64_t post_here(uint64_t args, uint64_t unused1, uint64_t unused2)
{
	struct post_args *a = (struct post_args *)(uintptr_t)args;
	struct sd_unit *un = a->un;
	uint64_t blkno = a->uio->uio_offset / un->block_size;
	uint32_t nblk = (uint32_t)(a->total / un->block_size);
	struct scsi_pkt *pkt;
	struct buf b;
	uint32_t t;

	(void)unused1;
	(void)unused2;
	if (!bioinit_iov(&b, B_WRITE, a->uio->uio_iov, a->uio->uio_iovcnt) || blkno > un->part_blocks ||
	    nblk > un->part_blocks - blkno)
		return EINVAL;
	for (t = 0; t < un->dump_outstanding && un->posted[t].pkt; t++)
		;
	if (un->stopped || t == un->dump_outstanding)
		return ENOTSUP;
	pkt = scsi_init_pkt(&un->addr, &b, CDB_GROUP4, FLAG_NOINTR, 0, un->block_size);
	if (!pkt)
		return ENOTSUP;
	scsi_setup_cdb(pkt, SCMD_WRITE_G1, un->part_lba + blkno, nblk, 0);
	pkt->pkt_time = un->timeout_ms;
	if (scsi_poll_can_post_quiet(un->addr.a_hba) ? scsi_poll_post_quiet(pkt) : scsi_poll_post(pkt)) {
		scsi_destroy_pkt(pkt);
		return ENOTSUP;
	}
	un->commands++;
	un->posted[t].pkt = pkt;
	un->posted[t].bytes = a->total;
	a->tag = t;
	return 0;
}

/*
 * A DUMP_ASYNC write: one WRITE packet handed to the HBA (scsi_poll_post), its tag the packet's
 * place in un->posted. ENOTSUP (dumpdev.c then writes it alone, through dump_write): a stopped
 * disk (START UNIT first), a write that takes more than one command or the bounce buffer while
 * it is taken, an HBA that did not take it. On an HBA that can be told afterwards (tran_kick),
 * the packet is built and handed over (in ring 3 after the crash: docs/guest.md, "Ring 3"; on
 * kvm-pvm that work took some 0.8 ms of emulated ring 0 a write), then the device is told here.
 */
static int dump_post(void *softc, const struct dumpdev *dev, const struct uio *uio, uint64_t total, uint32_t *tag)
{
	struct sd_unit *un = softc;
	struct post_args a = { un, uio, total, 0 };
	bool quiet = scsi_poll_can_post_quiet(un->addr.a_hba);
	int err;

	(void)dev;
	err = (int)(quiet ? run_unprivileged_after_crash(post_here, (uintptr_t)&a, 0, 0) : post_here((uintptr_t)&a, 0, 0));
	if (!err && quiet)
		scsi_poll_kick(un->addr.a_hba);
	*tag = a.tag;
	return err;
}

/* The posted write's end: counted when it succeeded, its packet and tag free. */
static void wait_end(struct sd_unit *un, struct sd_posted *p, bool ok)
{
	if (ok) {
		un->dump_writes++;
		un->dump_bytes += p->bytes;
	}
	scsi_destroy_pkt(p->pkt);
	p->pkt = 0;
}

/* dump_wait's common case (ring 3): the write back and GOOD, ended; else scsi_poll_wait_quiet's
 * EAGAIN or EINPROGRESS, nothing ended. */
static uint64_t wait_here(uint64_t unit, uint64_t tag, uint64_t unused)
{
	struct sd_unit *un = (struct sd_unit *)(uintptr_t)unit;
	struct sd_posted *p = &un->posted[tag];
	int err = scsi_poll_wait_quiet(p->pkt);

	(void)unused;
	if (!err)
		wait_end(un, p, true);
	return (uint64_t)err;
}

/* The posted write to completion, with scsi_poll's recovery if it failed (scsi_poll_wait). Where
 * post ran in ring 3, a write already back and GOOD is ended there too. */
static int dump_wait(void *softc, uint32_t tag)
{
	struct sd_unit *un = softc;
	struct sd_posted *p = &un->posted[tag];
	int err = EAGAIN;

	if (scsi_poll_can_post_quiet(un->addr.a_hba)) {
		err = (int)run_unprivileged_after_crash(wait_here, (uintptr_t)un, tag, 0);
		if (!err)
			return 0;
	}
	err = media_cmd_result(un, p->pkt, err == EINPROGRESS ? scsi_poll_wait_taken(p->pkt) : scsi_poll_wait(p->pkt));
	wait_end(un, p, !err);
	return err ? EIO : 0;
}

static const struct dumpdev_ops sd_dump_ops = {
	.init = dump_init,
	.term = dump_term,
	.max_transfer = dump_query_max,
	.start = dump_start,
	.write = dump_write,
	.flush = dump_flush,
	.outstanding = dump_query_outstanding,
	.post = dump_post,
	.wait = dump_wait,
	.status = dump_status,
};

int sd_dddump(struct dumpdev *dev, struct uio *uio, int cmd, void *arg)
{
	return dumpdev_dddump(&sd_dump_ops, dev, uio, cmd, arg);
}

/* ---- runtime I/O (dumpdev_runtime_io) -------------------------------------------------------- */

/*
 * Interrupt-driven READ/WRITE packets (no FLAG_NOINTR) over the HBA's tran_intr_* hooks: submit
 * starts one in a free request slot and returns; the HBA's interrupt handler (tran_intr, called
 * through intr) completes it through pkt_comp = rio_done, which frees the slot and calls the
 * caller's done. From DUMPSTART on (`dumping`) nothing is submitted and nothing completes: the
 * quiesce ended whatever was in flight and rio_forget drops the slots; a completion that still
 * reached rio_done would be dropped, its done never called. The slots live in the unit (the
 * dump path's state: DUMPSTART writes them).
 */
static int rio_in_flight(const struct sd_unit *un)
{
	int n = 0;

	for (int i = 0; i < SD_RIO_SLOTS; i++)
		n += un->rio[i].pkt != 0;
	return n;
}

static void rio_forget(struct sd_unit *un)
{
	for (int i = 0; i < SD_RIO_SLOTS; i++)
		if (un->rio[i].pkt) {
			un->rio[i].pkt = 0;	/* reclaimed with the whole pool: not destroyed */
			un->rio_dropped++;
		}
}

/* pkt_comp: interrupt context (IF = 0), from the HBA's tran_intr. */
static void rio_done(struct scsi_pkt *pkt)
{
	struct sd_rio *r = pkt->pkt_private;
	struct sd_unit *un = r->un;
	bool ok = pkt->pkt_reason == CMD_CMPLT && pkt->pkt_scbp == STATUS_GOOD && pkt->pkt_resid == 0;

	if (r->pkt != pkt) {
		/* Forgotten at DUMPSTART (the pool was reclaimed): not ours to touch. */
		un->rio_dropped++;
		return;
	}
	r->pkt = 0;
	scsi_destroy_pkt(pkt);		/* a bounced READ's data is copied out here */
	if (un->dumping) {
		un->rio_dropped++;
		return;
	}
	if (ok)
		un->rio_completed++;
	else
		un->rio_failed++;
	r->done(r->cookie, ok);		/* may submit again: the slot is free */
}

static int rio_submit(void *softc, bool write, uint64_t lba, uint32_t nblocks, void *buf,
		      void (*done)(void *cookie, bool ok), void *cookie)
{
	struct sd_unit *un = softc;
	const struct scsi_dma_limits *lim = &un->addr.a_hba->limits;
	uint64_t bytes = (uint64_t)nblocks * un->block_size, flags;
	struct scsi_pkt *pkt;
	struct sd_rio *r = 0;
	int rc;

	if (un->dumping || !un->rio_intr)
		return EINVAL;
	if (!done || !buf || nblocks == 0 || lba >= un->nblocks || nblocks > un->nblocks - lba)
		return EINVAL;
	/* Never the dump partition. */
	if (un->part_blocks && lba < un->part_lba + un->part_blocks && un->part_lba < lba + nblocks)
		return EINVAL;
	if (write && un->write_protected)
		return EROFS;
	/* One command carries it (a contiguous buffer: one segment per max_seg_len). */
	if (bytes > lim->max_xfer || bytes > (uint64_t)lim->max_segs * lim->max_seg_len)
		return EINVAL;

	flags = irq_save();
	for (int i = 0; i < SD_RIO_SLOTS; i++)
		if (!un->rio[i].pkt) {
			r = &un->rio[i];
			break;
		}
	if (!r) {
		un->rio_busy++;
		irq_restore(flags);
		return EBUSY;
	}
	bioinit(&r->bp, write ? B_WRITE : B_READ, buf, bytes);
	pkt = scsi_init_pkt(&un->addr, &r->bp, CDB_GROUP4, 0, 0, un->block_size);
	if (!pkt) {
		/* No runtime packet (or bounce buffer) free now. */
		un->rio_busy++;
		irq_restore(flags);
		return EBUSY;
	}
	/* READ(10)/WRITE(10), or (16) past 2^32 blocks. */
	scsi_setup_cdb(pkt, write ? SCMD_WRITE_G1 : SCMD_READ_G1, lba, nblocks, 0);
	pkt->pkt_time = un->timeout_ms;
	pkt->pkt_comp = rio_done;
	pkt->pkt_private = r;
	r->un = un;
	r->done = done;
	r->cookie = cookie;
	r->pkt = pkt;
	rc = un->addr.a_hba->tran->tran_start(&un->addr, pkt);
	if (rc != TRAN_ACCEPT) {
		r->pkt = 0;
		scsi_destroy_pkt(pkt);
		if (rc == TRAN_BUSY)
			un->rio_busy++;
		irq_restore(flags);
		return rc == TRAN_BUSY ? EBUSY : EIO;
	}
	un->rio_submitted++;
	irq_restore(flags);
	return 0;
}

static int rio_intr_enable(void *softc, uint8_t vector)
{
	struct sd_unit *un = softc;
	struct scsi_hba *hba = un->addr.a_hba;
	int err;

	if (un->dumping)
		return EINVAL;
	err = hba->tran->tran_intr_enable(hba, vector);
	if (!err)
		un->rio_intr = true;
	return err;
}

static void rio_intr(void *softc)
{
	struct sd_unit *un = softc;

	un->addr.a_hba->tran->tran_intr(un->addr.a_hba);
}

static void rio_intr_mute(void *softc)
{
	struct sd_unit *un = softc;

	un->addr.a_hba->tran->tran_intr_mute(un->addr.a_hba);
}

static const struct dumpdev_runtime_io sd_runtime_io = {
	.intr_enable = rio_intr_enable,
	.intr = rio_intr,
	.intr_mute = rio_intr_mute,
	.submit = rio_submit,
};

static int sd_read_blocks(void *softc, uint64_t lba, void *buf, uint32_t nblocks)
{
	return sd_read(softc, lba, buf, nblocks);
}

int sd_dump_attach(const char *hba_word, size_t word_len, int index, int target, int lun,
		   uint32_t iotimeout_ms, struct dump_disk *out)
{
	const struct scsi_hba_driver *drv = scsi_hba_driver_by_word(hba_word, word_len);
	struct scsi_hba *hba;
	struct sd_unit *un;
	int err;

	if (!drv)
		return ENODEV;
	scsi_hba_probe_all();
	hba = scsi_hba_find(drv->name, index);
	if (!hba)
		return ENODEV;
	out->where = hba->name ? hba->name : drv->name;
	err = sd_attach(hba, (uint16_t)target, (uint16_t)lun, iotimeout_ms, &un);
	if (err)
		return err;
	out->softc = un;
	out->block_size = sd_block_size(un);
	out->nblocks = sd_capacity_blocks(un);
	out->read = sd_read_blocks;
	out->dddump = sd_dddump;
	out->print_info = sd_print_info;
	/* Interrupt-driven runtime I/O only when the HBA can interrupt. */
	if (hba->tran->tran_intr_enable && hba->tran->tran_intr && hba->tran->tran_intr_mute)
		out->runtime_io = &sd_runtime_io;
	return 0;
}

void sd_print_info(const void *softc)
{
	const struct sd_unit *un = softc;
	const struct scsi_hba *hba = un->addr.a_hba;
	const struct scsi_dma_limits *lim = &hba->limits;

	printf("  sd: %s: '%s' '%s' '%s'%s\n", un->name, un->vendor, un->product, un->revision,
	       un->removable ? " removable" : "");
	printf("  capacity %llu blocks of %u bytes (%llu MiB), READ CAPACITY(%d)%s%s\n",
	       (unsigned long long)un->nblocks, un->block_size,
	       (unsigned long long)(un->nblocks * un->block_size >> 20), un->rc16 ? 16 : 10,
	       un->write_protected ? ", write-protected" : "", un->stopped ? ", STOPPED" : "");
	printf("  hba limits: dma_addr_max %#llx, max_xfer %u, max_segs %u, max_seg_len %u; "
	       "dump max transfer %u\n",
	       (unsigned long long)lim->dma_addr_max, lim->max_xfer, lim->max_segs, lim->max_seg_len,
	       un->dump_max_xfer);
	printf("  commands %llu, failures %llu, dump writes %llu (%llu bytes), syncs %llu, "
	       "start %llu, stop %llu, I/O timeout %u ms%s\n",
	       (unsigned long long)un->commands, (unsigned long long)un->failures,
	       (unsigned long long)un->dump_writes, (unsigned long long)un->dump_bytes,
	       (unsigned long long)un->syncs, (unsigned long long)un->start_units,
	       (unsigned long long)un->stop_units, un->timeout_ms, un->dumping ? ", DUMPING" : "");
	if (un->failures) {
		const struct scsi_poll_stat *f = &un->last_failure;

		printf("  last failure: cdb 0x%02x after %u attempts: %s (reason %s, status 0x%02x",
		       un->last_failed_cdb0, f->attempts, f->gave_up ? f->gave_up : "?",
		       scsi_reason_name(f->reason), f->status);
		if (f->sense.valid)
			printf(", sense %s %02x/%02x", scsi_key_name(f->sense.key), f->sense.asc, f->sense.ascq);
		printf("; UA %u, busy %u, aborts %u, LUN resets %u, target resets %u, bus resets %u)\n",
		       f->unit_attentions, f->busy_retries, f->aborts, f->lun_resets, f->target_resets,
		       f->bus_resets);
	}
	printf("  packets: %d in use; polls %llu (failed %llu), retries %llu, bounced %llu bytes, "
	       "split %llu\n",
	       scsi_pkt_in_use(), (unsigned long long)scsi_pkt_stats.polls,
	       (unsigned long long)scsi_pkt_stats.poll_failures, (unsigned long long)scsi_pkt_stats.retries,
	       (unsigned long long)scsi_pkt_stats.bounced_bytes,
	       (unsigned long long)scsi_pkt_stats.partial_maps);
	if (hba->tran->tran_print_info)
		hba->tran->tran_print_info((struct scsi_hba *)hba);
	if (un->rio_intr)
		printf("  runtime I/O: %d in flight; submitted %llu, completed %llu, failed %llu, "
		       "refused busy %llu, dropped %llu\n",
		       rio_in_flight(un), (unsigned long long)un->rio_submitted,
		       (unsigned long long)un->rio_completed, (unsigned long long)un->rio_failed,
		       (unsigned long long)un->rio_busy, (unsigned long long)un->rio_dropped);
}
