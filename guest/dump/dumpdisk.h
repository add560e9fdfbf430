/*
 * Disk drivers that are dump targets on their own (not through the SCSI layer): each declares
 * itself with DUMP_DISK_DRIVER(word, attach), an entry in the linker set
 * [__dump_disk_drivers_start, __dump_disk_drivers_end) (linker.ld). `word` is its dumpdev=
 * word ("virtio-blk", "nvme": word[:N], the N-th such device in PCI order). Disks on a SCSI
 * HBA come the other way: the HBA driver's SCSI_HBA_DRIVER entry names their word, and sd
 * drives them. Nothing above the drivers names a kind: a driver left out of the Makefile is
 * simply not a dump target.
 */
#ifndef DUMP_DUMPDISK_H
#define DUMP_DUMPDISK_H

#include <stddef.h>
#include <stdint.h>

#include "dump/dumpdev.h"

/* One attached disk: what the boot code needs to find the dump partition and configure it. */
struct dump_disk {
	void *softc;
	uint32_t block_size;
	uint64_t nblocks;
	int (*read)(void *softc, uint64_t lba, void *buf, uint32_t nblocks);	/* 0 or errno */
	dddump_fn dddump;
	void (*print_info)(const void *softc);
	const struct dumpdev_runtime_io *runtime_io;	/* NULL: none */
	const char *where;		/* e.g. "00:04.0", for messages */
};

struct dump_disk_driver {
	const char *word;
	/* Attach the index-th device of this driver: 0, ENODEV (no such device) or the errno of
	 * a device that would not start. */
	int (*attach)(int index, uint32_t iotimeout_ms, struct dump_disk *out);
};

#define DUMP_DISK_DRIVER(drv_word, drv_attach)						\
	static const struct dump_disk_driver dump_disk_driver_##drv_attach		\
	__attribute__((used, section(".rodata.dump_disk_drivers"), aligned(8))) = { drv_word, drv_attach }

/* The driver whose word is v[0..len), or NULL. */
const struct dump_disk_driver *dump_disk_driver_find(const char *v, size_t len);

#endif
