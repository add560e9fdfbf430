#ifndef KERN_CMDLINE_H
#define KERN_CMDLINE_H

#include <stdbool.h>
#include <stdint.h>

#define IOTIMEOUT_DEFAULT_MS 10000

enum dumpdev_kind {
	DUMPDEV_VIRTIO_BLK,		/* virtio-blk[:N] */
	DUMPDEV_VIRTIO_SCSI,		/* virtio-scsi[:N[:T[:L]]] */
	DUMPDEV_LSI,			/* lsi[:N[:T[:L]]] */
};

struct boot_config {
	bool dumpdev_set;		/* dumpdev= given */
	char dumpdev[32];		/* its value, e.g. "virtio-blk" or "virtio-scsi:0:1:0" */
	enum dumpdev_kind dumpdev_kind;
	int dumpdev_index;		/* N: the N-th such function / HBA, 0 by default */
	int dumpdev_target;		/* T: SCSI target, 0 by default */
	int dumpdev_lun;		/* L: SCSI LUN, 0 by default */
	bool workload;			/* workload=on */
	uint8_t dump_id[16];		/* dumpid=, all zero by default */
	bool fill;			/* fill=SEED given (not "off") */
	uint64_t fill_seed;
	uint32_t iotimeout_ms;		/* iotimeout=, per device request */
	/* dumpdev2=: the secondary dump device (restart target), same syntax as dumpdev= */
	bool dumpdev2_set;
	char dumpdev2[32];
	enum dumpdev_kind dumpdev2_kind;
	int dumpdev2_index;
	int dumpdev2_target;
	int dumpdev2_lun;
	uint32_t dump_level;		/* dumplevel=0..9, CD_LVL_NORMAL (3) by default */
	char components[256];		/* components=LIST (docs/components.md), "default" by default */
	uint64_t pinpool_bytes;		/* pinpool=SIZE, 0: the default size */
};

extern struct boot_config boot_config;

/*
 * Parse the space-separated key=value words. Unknown keys are reported on the console and
 * ignored; a known key with a bad value is an error (returns false, `why` names it).
 */
bool cmdline_parse(const char *cmdline, const char **why);

#endif
