#ifndef KERN_CMDLINE_H
#define KERN_CMDLINE_H

#include <stdbool.h>
#include <stdint.h>

#define IOTIMEOUT_DEFAULT_MS 10000

struct boot_config {
	bool dumpdev_set;		/* dumpdev= given */
	char dumpdev[32];		/* its value, e.g. "virtio-blk" or "virtio-blk:1" */
	int dumpdev_index;		/* N of virtio-blk:N, 0 for plain virtio-blk */
	uint8_t dump_id[16];		/* dumpid=, all zero by default */
	bool fill;			/* fill=SEED given (not "off") */
	uint64_t fill_seed;
	uint32_t iotimeout_ms;		/* iotimeout=, per device request */
};

extern struct boot_config boot_config;

/*
 * Parse the space-separated key=value words. Unknown keys are reported on the console and
 * ignored; a known key with a bad value is an error (returns false, `why` names it).
 */
bool cmdline_parse(const char *cmdline, const char **why);

#endif
