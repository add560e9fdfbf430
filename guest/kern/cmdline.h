#ifndef KERN_CMDLINE_H
#define KERN_CMDLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dump/netdump.h"

#define IOTIMEOUT_DEFAULT_MS 10000

/* A dump device as dumpdev= or dumpdev2= name it: WORD[:N] for a dump disk driver
 * (dump/dumpdisk.h) or a network dump NIC driver (dump/dumpnic.h), WORD[:N[:T[:L]]] for a disk
 * on a SCSI HBA driver (scsi/hba.h). */
struct dumpdev_addr {
	char value[32];			/* as given, e.g. "virtio-blk" or "virtio-scsi:0:1:0" */
	size_t word_len;		/* value[0..word_len) is the driver's word */
	bool on_hba;			/* the word is a SCSI HBA driver's */
	bool on_nic;			/* the word is a NIC driver's: a network dump */
	int index;			/* N: the N-th such device / HBA, 0 by default */
	int target;			/* T: SCSI target, 0 by default */
	int lun;			/* L: SCSI LUN, 0 by default */
};

struct boot_config {
	bool dumpdev_set;		/* dumpdev= given */
	struct dumpdev_addr dumpdev;
	bool workload;			/* workload=on */
	uint8_t dump_id[16];		/* dumpid=, all zero by default */
	bool fill;			/* fill=SEED given (not "off") */
	uint64_t fill_seed;
	uint32_t iotimeout_ms;		/* iotimeout=, per device request */
	/* dumpdev2=: the secondary dump device (restart target), same syntax as dumpdev= */
	bool dumpdev2_set;
	struct dumpdev_addr dumpdev2;
	uint32_t dump_level;		/* dumplevel=0..9, CD_LVL_NORMAL (3) by default */
	char components[256];		/* components=LIST (docs/components.md), "default" by default */
	uint64_t pinpool_bytes;		/* pinpool=SIZE, 0: the default size */
	uint32_t compression;		/* compress=lz4|off: DUMP_COMPRESSION_*, NONE by default */
	/* the network dump (docs/netdump-protocol.md, section 3) */
	bool netaddr_set, netserver_set;
	struct netdump_config net;
};

extern struct boot_config boot_config;

/*
 * Parse the space-separated key=value words. Unknown keys are reported on the console and
 * ignored; a known key with a bad value is an error (returns false, `why` names it).
 */
bool cmdline_parse(const char *cmdline, const char **why);

#endif
