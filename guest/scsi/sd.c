/*
 * sd: SCSI disks, after illumos' sd(4D) as far as a dump device needs it.
 *
 * Everything here is polled through scsi_poll() except the runtime workload (interrupt-driven
 * packets with a completion callback). The dump entry point sddump() follows the Solaris
 * dump(9E) example: partition-relative block numbers, a power-up of a stopped disk first,
 * WRITE through scsi_init_pkt/scsi_setup_cdb/scsi_poll, the `dumping` flag so a runtime
 * command that was in flight at the crash is never completed or requeued, EIO on failure.
 * sd_dddump() puts the AIX dump protocol (DUMPINIT .. DUMPTERM) on top of it.
 */
#include "scsi/sd.h"
#include "dump/dumpdisk.h"
#include "lib/testfault.h"
#include "arch/x86/tsc.h"
#include "lib/errno.h"
#include "lib/dumpstate.h"
#include "lib/printf.h"
#include "lib/string.h"

#define SD_MAX_UNITS		2
#define SD_MAX_DUMP_XFER	(4u << 20)
#define SD_PAGE			4096u
#define INQUIRY_LEN		96
#define START_STOP_TIME_MS	60000	/* spinning up takes time on real disks */

#define WL_SLOTS		3	/* workload commands in flight */

struct sd_workload;

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
	bool dump_ready, dump_active, unflushed;
	volatile bool dumping;		/* sticky once the dump started: no runtime command
					 * completes or requeues any more */
	/* what went wrong last */
	struct scsi_poll_stat last_failure;
	uint8_t last_failed_cdb0;
	/* statistics */
	uint64_t commands, failures, dump_writes, dump_bytes, syncs, start_units, stop_units;
	struct sd_workload *wl;
};

/* The dump path's state (lib/dumpstate.h): DUMPSTART..DUMPEND update the unit. */
static struct sd_unit units[SD_MAX_UNITS] __dumpstate;
static int nunits;
static uint8_t sd_scratch[512] __attribute__((aligned(64)));

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
		if (write && un->dump_active)
			un->dumping = true;	/* as in the Solaris example, around scsi_poll */
		un->commands++;
		err = scsi_poll(pkt);
		if (err && needs_start_unit(&scsi_poll_last)) {
			/* It spun down under us: start it and try this command once more. */
			remember_failure(un, pkt);
			un->stopped = true;
			if (sd_start_stop(un, true) == 0)
				err = scsi_poll(pkt);
		}
		if (err) {
			remember_failure(un, pkt);
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
 * page-aligned data in up to two pieces (the writer's data plus a tail page), and 4 MiB;
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

static void fill_stat(struct sd_unit *un, struct dumpio_stat *st, int err, enum dumpio_op op,
		      uint64_t offset)
{
	const struct scsi_poll_stat *f = &un->last_failure;

	if (!st)
		return;
	st->error = err;
	st->op = op;
	/* SCSI has no device status register: the transport's view of the last failed command
	 * (pkt_reason << 8 | status byte), and its sense (key << 16 | asc << 8 | ascq). */
	st->device_status = (uint32_t)f->reason << 8 | f->status;
	st->request_status = f->sense.valid ? (uint32_t)f->sense.key << 16 | (uint32_t)f->sense.asc << 8 |
						      f->sense.ascq
					    : 0xff;
	st->failing_offset = offset;
}

static int dump_write(struct sd_unit *un, struct dumpdev *dev, struct uio *uio, struct dumpio_stat *st)
{
	uint64_t total;
	struct buf b;
	int err;

	/* Bounds and alignment before anything reaches the disk. */
	if (!dumpdev_write_ok(dev, uio, un->block_size, un->dump_max_xfer, &total) ||
	    !bioinit_iov(&b, B_WRITE, uio->uio_iov, uio->uio_iovcnt)) {
		fill_stat(un, st, EINVAL, DUMPIO_OP_WRITE, uio ? uio->uio_offset : 0);
		return EINVAL;
	}
	if (total) {
		err = sddump_buf(un, &b, uio->uio_offset / un->block_size);
		if (err) {
			fill_stat(un, st, err, DUMPIO_OP_WRITE, uio->uio_offset);
			return err;
		}
		un->dump_writes++;
		un->dump_bytes += total;
		un->unflushed = true;
	}
	if (uio->uio_fmode & DUMP_FSYNC) {
		err = sd_sync_cache(un);
		if (err) {
			fill_stat(un, st, EIO, DUMPIO_OP_FLUSH, uio->uio_offset);
			return EIO;
		}
		un->unflushed = false;
	}
	uio->uio_resid = 0;
	return 0;
}

int sd_dddump(struct dumpdev *dev, struct uio *uio, int cmd, void *arg)
{
	struct sd_unit *un = dev ? dev->softc : 0;
	struct dumpio_stat *st = arg;
	struct scsi_hba *hba;
	int err;

	if (!un)
		return ENODEV;
	hba = un->addr.a_hba;
	if (cmd != DUMPQUERY && st)
		memset(st, 0, sizeof(*st));

	switch (cmd) {
	case DUMPINIT:
		if (!dumpdev_partition_ok(dev, un->block_size, un->nblocks)) {
			fill_stat(un, st, EINVAL, DUMPIO_OP_NONE, 0);
			return EINVAL;
		}
		if (un->write_protected) {
			fill_stat(un, st, EROFS, DUMPIO_OP_NONE, 0);
			return EROFS;
		}
		/* The unit, the HBA and its driver state are static, the dump path's state (in the
		 * kernel image, always pinned, and the one part of it the dump does not compare
		 * with memory at the crash); the HBA pins the registers its dump path uses. */
		if (!in_dumpstate(un, sizeof(*un)) || !in_dumpstate(hba, sizeof(*hba)) ||
		    !hba->tran->tran_quiesce) {
			fill_stat(un, st, EFAULT, DUMPIO_OP_NONE, 0);
			return EFAULT;
		}
		if (!un->dump_ready && hba->tran->tran_dump_pin) {
			err = hba->tran->tran_dump_pin(hba);
			if (err) {
				fill_stat(un, st, err, DUMPIO_OP_NONE, 0);
				return err;
			}
		}
		un->part_lba = dev->part_lba;
		un->part_blocks = dev->part_blocks;
		un->dump_max_xfer = dump_max_transfer(un);
		un->dump_ready = true;
		return 0;

	case DUMPQUERY: {
		struct dmp_query *q = arg;

		if (!un->dump_ready || !q)
			return EINVAL;
		q->min_tsize = un->block_size;
		q->max_tsize = un->dump_max_xfer;
		return 0;
	}

	case DUMPSTART:
		if (!un->dump_ready) {
			fill_stat(un, st, EINVAL, DUMPIO_OP_NONE, 0);
			return EINVAL;
		}
		/* From here on no runtime command completes or is requeued. */
		un->dumping = true;
		if (un->wl && sd_workload_in_flight(un))
			printf("sd: %d runtime commands in flight at the crash: dropped by the quiesce\n",
			       sd_workload_in_flight(un));
		err = hba->tran->tran_quiesce(hba);
		/* Whatever the interrupted kernel held (packets, bounce buffers) is ours now. */
		scsi_pkt_reclaim_all();
		if (err) {
			fill_stat(un, st, err, DUMPIO_OP_RESET, 0);
			return err;
		}
		/* The quiesce may have reset the bus: take the UNIT ATTENTION, and start the disk
		 * if it was stopped. */
		err = sd_ready(un);
		if (err) {
			fill_stat(un, st, EIO, DUMPIO_OP_RESET, 0);
			return EIO;
		}
		un->dump_active = true;
		un->unflushed = false;
		return 0;

	case DUMPWRITE:
		if (!un->dump_active) {
			fill_stat(un, st, EINVAL, DUMPIO_OP_WRITE, uio ? uio->uio_offset : 0);
			return EINVAL;
		}
		return dump_write(un, dev, uio, st);

	case DUMPEND:
		if (!un->dump_active)
			return 0;
		un->dump_active = false;
		if (!un->unflushed)
			return 0;
		err = sd_sync_cache(un);
		if (err) {
			fill_stat(un, st, EIO, DUMPIO_OP_FLUSH, 0);
			return EIO;
		}
		un->unflushed = false;
		return 0;

	case DUMPTERM:
		if (un->dump_ready && hba->tran->tran_dump_unpin)
			hba->tran->tran_dump_unpin(hba);
		un->dump_active = false;
		un->dump_ready = false;
		return 0;

	default:
		return EINVAL;
	}
}

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
	if (un->wl)
		sd_workload_print(un);
}

/* ---- runtime workload ---------------------------------------------------------------------- */

/*
 * Interrupt-driven I/O that is in flight whenever the machine idles: each slot READs a chunk
 * of the region into its buffer, stamps every block of it with a new request number (the first
 * 16 bytes of each 512 bytes: "DBWL", u32 request number, u64 disk byte offset), WRITEs it back,
 * then moves on to the next chunk. So the buffers (ordinary, non-volatile memory) and the
 * region change with every request: a runtime READ that lands after the crash changes memory
 * the dump compares with the snapshot, and a runtime WRITE that lands after the dump began
 * shows in the device's write log (the canary oracle knows what the runtime wrote before). Completions arrive through the
 * HBA's interrupt handler (pkt_comp, interrupt context); a slot that could not be restarted
 * there (no packet, HBA busy) is restarted from the idle loop (sd_workload_kick). Once the dump
 * has started (`dumping`), a completion - there should be none after tran_quiesce - is dropped:
 * never requeued.
 */
#define WL_CHUNK_BYTES		8192

struct wl_slot {
	struct sd_unit *un;
	struct scsi_pkt *pkt;		/* in flight, or NULL */
	struct buf bp;
	uint64_t chunk;			/* chunk number within the region */
	bool writing;			/* the WRITE-back of what the READ brought */
	bool idle;			/* needs a (re)start from the idle loop */
};

struct sd_workload {
	volatile bool running;
	uint64_t first, nblocks;	/* the region, absolute blocks */
	uint32_t chunk_blocks;
	uint64_t nchunks, next_chunk;
	uint32_t stamp;			/* request number of the last write */
	struct wl_slot slot[WL_SLOTS];
	uint64_t reads, writes, errors, restarts, dropped, bytes;
};

/* The workload's bookkeeping is the dump path's state (DUMPSTART stops it and drops its
 * packets); its buffers are not: the dump compares them with memory at the crash, so a
 * runtime READ that lands after the crash shows there. */
static struct sd_workload workload __dumpstate;
static uint8_t wl_buf[WL_SLOTS][WL_CHUNK_BYTES] __attribute__((aligned(4096)));

static uint64_t wl_irq_save(void)
{
	uint64_t flags;

	__asm__ __volatile__("pushfq; popq %0; cli" : "=r"(flags) : : "memory");
	return flags;
}

static void wl_irq_restore(uint64_t flags)
{
	if (flags & 0x200)
		__asm__ __volatile__("sti" : : : "memory");
}

static void wl_done(struct scsi_pkt *pkt);

/* A chunk no other slot is working on. */
static uint64_t wl_pick_chunk(struct sd_workload *w, struct wl_slot *me)
{
	for (uint64_t tries = 0; tries < w->nchunks; tries++) {
		uint64_t c = w->next_chunk;
		bool taken = false;

		w->next_chunk = (w->next_chunk + 1) % w->nchunks;
		for (int i = 0; i < WL_SLOTS; i++)
			if (&w->slot[i] != me && !w->slot[i].idle && w->slot[i].chunk == c)
				taken = true;
		if (!taken)
			return c;
	}
	return me->chunk;
}

/* A new request number in every 512 bytes of the chunk about to be written. */
static void wl_stamp(struct sd_workload *w, uint8_t *buf, uint64_t lba, uint32_t block_size)
{
	uint64_t at = lba * block_size;

	w->stamp++;
	for (uint32_t off = 0; off < WL_CHUNK_BYTES; off += 512) {
		uint64_t *p = (uint64_t *)(buf + off);

		p[0] = 0x4c574244ull | (uint64_t)w->stamp << 32;	/* "DBWL", request number */
		p[1] = at + off;
	}
}

/* Start the slot's next command (IF = 0: from the handler, or the idle loop with it off). */
static void wl_issue(struct sd_workload *w, struct wl_slot *s)
{
	struct sd_unit *un = s->un;
	struct scsi_pkt *pkt;
	uint64_t lba = w->first + s->chunk * w->chunk_blocks;

	if (s->writing)
		wl_stamp(w, wl_buf[s - w->slot], lba, un->block_size);

	bioinit(&s->bp, s->writing ? B_WRITE : B_READ, wl_buf[s - w->slot],
		(uint64_t)w->chunk_blocks * un->block_size);
	pkt = scsi_init_pkt(&un->addr, &s->bp, CDB_GROUP4, 0, 0, un->block_size);
	if (!pkt) {
		s->idle = true;
		return;
	}
	scsi_setup_cdb(pkt, s->writing ? SCMD_WRITE_G1 : SCMD_READ_G1, lba, w->chunk_blocks, 0);
	pkt->pkt_time = un->timeout_ms;
	pkt->pkt_comp = wl_done;
	pkt->pkt_private = s;
	s->pkt = pkt;
	s->idle = false;
	if (un->addr.a_hba->tran->tran_start(&un->addr, pkt) != TRAN_ACCEPT) {
		s->pkt = 0;
		s->idle = true;
		scsi_destroy_pkt(pkt);
	}
}

/* Completion, in interrupt context. */
static void wl_done(struct scsi_pkt *pkt)
{
	struct wl_slot *s = pkt->pkt_private;
	struct sd_workload *w = &workload;
	bool ok = pkt->pkt_reason == CMD_CMPLT && pkt->pkt_scbp == STATUS_GOOD && pkt->pkt_resid == 0;

	s->pkt = 0;
	scsi_destroy_pkt(pkt);
	if (s->un->dumping || !w->running) {
		/* The dump owns the disk now (or the workload was stopped): never requeue. */
		w->dropped++;
		s->idle = true;
		return;
	}
	if (!ok) {
		/* A failed READ must not be written back; start over on another chunk. */
		w->errors++;
		s->writing = false;
		s->chunk = wl_pick_chunk(w, s);
	} else if (!s->writing) {
		w->reads++;
		s->writing = true;
	} else {
		w->writes++;
		w->bytes += (uint64_t)w->chunk_blocks * s->un->block_size;
		s->writing = false;
		s->chunk = wl_pick_chunk(w, s);
	}
	wl_issue(w, s);
}

int sd_workload_start(struct sd_unit *un, uint64_t lba, uint64_t nblocks)
{
	struct sd_workload *w = &workload;
	uint64_t flags;

	if (w->running)
		return un->wl ? 0 : EBUSY;
	for (int i = 0; i < WL_SLOTS; i++)
		if (w->slot[i].pkt)
			return EBUSY;	/* the last stop has not drained yet */
	if (un->dumping)
		return EINVAL;
	/* Never the dump partition. */
	if (lba + nblocks > un->nblocks || (un->part_blocks && lba < un->part_lba + un->part_blocks &&
					    un->part_lba < lba + nblocks))
		return EINVAL;
	w->first = lba;
	w->nblocks = nblocks;
	w->chunk_blocks = WL_CHUNK_BYTES / un->block_size;
	w->nchunks = nblocks / w->chunk_blocks;
	if (w->nchunks < 2 * WL_SLOTS)
		return ENOSPC;
	w->next_chunk = 0;
	un->wl = w;
	flags = wl_irq_save();
	w->running = true;
	for (int i = 0; i < WL_SLOTS; i++) {
		struct wl_slot *s = &w->slot[i];

		s->un = un;
		s->pkt = 0;
		s->writing = false;
		s->idle = true;
		s->chunk = wl_pick_chunk(w, s);
		wl_issue(w, s);
	}
	wl_irq_restore(flags);
	return 0;
}

void sd_workload_kick(struct sd_unit *un)
{
	struct sd_workload *w = &workload;
	uint64_t flags;

	if (!w->running || un->dumping)
		return;
	flags = wl_irq_save();
	for (int i = 0; i < WL_SLOTS; i++) {
		struct wl_slot *s = &w->slot[i];

		if (s->idle && !s->pkt) {
			w->restarts++;
			wl_issue(w, s);
		}
	}
	wl_irq_restore(flags);
}

void sd_workload_stop(struct sd_unit *un)
{
	workload.running = false;	/* completions no longer requeue */
}

bool sd_workload_running(const struct sd_unit *un)
{
	return workload.running;
}

int sd_workload_in_flight(const struct sd_unit *un)
{
	int n = 0;

	for (int i = 0; i < WL_SLOTS; i++)
		n += workload.slot[i].pkt != 0;
	return n;
}

void sd_workload_print(const struct sd_unit *un)
{
	const struct sd_workload *w = &workload;

	printf("  workload %s: blocks %llu-%llu in %u-block chunks, %d in flight; reads %llu, "
	       "writes %llu (%llu bytes), errors %llu, restarts %llu, dropped %llu\n",
	       w->running ? "on" : "off", (unsigned long long)w->first,
	       (unsigned long long)(w->first + w->nblocks - 1), w->chunk_blocks,
	       sd_workload_in_flight(un), (unsigned long long)w->reads, (unsigned long long)w->writes,
	       (unsigned long long)w->bytes, (unsigned long long)w->errors,
	       (unsigned long long)w->restarts, (unsigned long long)w->dropped);
}
