/* sd: the SCSI direct-access (disk) target driver, on any HBA of scsi/hba.h. */
#ifndef SCSI_SD_H
#define SCSI_SD_H

#include <stdbool.h>
#include <stdint.h>

#include "dump/dumpdev.h"
#include "scsi/scsi.h"

struct sd_unit;

/*
 * Bring up the disk at (hba, target, lun): INQUIRY, TEST UNIT READY (START UNIT when it needs
 * one), READ CAPACITY(10), or (16) when the disk is too big for 10, MODE SENSE for write
 * protection. All polled. `timeout_ms` bounds each command. Returns ENODEV when there is no
 * disk there, other errnos when it does not work.
 */
int sd_attach(struct scsi_hba *hba, uint16_t target, uint16_t lun, uint32_t timeout_ms,
	      struct sd_unit **out);

/* Runtime reads (polled), in logical blocks: the GPT lookup. */
int sd_read(struct sd_unit *un, uint64_t lba, void *buf, uint32_t nblocks);

uint32_t sd_block_size(const struct sd_unit *un);
uint64_t sd_capacity_blocks(const struct sd_unit *un);
struct scsi_hba *sd_hba(const struct sd_unit *un);

/* START STOP UNIT: start=0 spins the disk down (the console's stop-disk), start=1 up. */
int sd_start_stop(struct sd_unit *un, bool start);

/*
 * The dump(9E) entry point: write nblk blocks from addr to block blkno of the dump partition
 * (partition-relative), polled. EINVAL past the partition's end, EIO when the disk fails.
 */
int sddump(struct sd_unit *un, void *addr, uint64_t blkno, uint32_t nblk);

/* The AIX-shaped device dump protocol (dump/dumpdev.h) on top of sddump. dev->softc is the
 * struct sd_unit. */
int sd_dddump(struct dumpdev *dev, struct uio *uio, int cmd, void *arg);

/* For the console: HBA, target, LUN, capacity, block size, limits, state. */
void sd_print_info(const void *softc);

struct dump_disk;
/* The disk at (target, LUN) of the index-th HBA whose driver has this dumpdev word, attached
 * as a dump disk (dump/dumpdisk.h): 0, ENODEV (no such HBA or disk) or errno. Its runtime_io
 * (interrupt-driven READ/WRITE packets) is set when the HBA has the tran_intr_* hooks. */
int sd_dump_attach(const char *hba_word, size_t word_len, int index, int target, int lun,
		   uint32_t iotimeout_ms, struct dump_disk *out);

#endif
