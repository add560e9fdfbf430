#ifndef DUMP_DUMPSYS_H
#define DUMP_DUMPSYS_H

#include <stdbool.h>
#include <stdint.h>

#include "dump/dumpdev.h"
#include "dump/format.h"

/* The configured dump devices, NULL if none: primary (dumpdev=) and secondary (dumpdev2=,
 * where the dump restarts when a write to the primary fails). */
extern struct dumpdev *dump_device;
extern struct dumpdev *dump_device2;

/*
 * Make `dev` the dump device of `role` (DUMP_ROLE_PRIMARY / DUMP_ROLE_SECONDARY): DUMPINIT and
 * DUMPQUERY. A device it replaces gets DUMPTERM afterwards (only once the new one is ready);
 * on failure the new one gets DUMPTERM if DUMPINIT had succeeded, and the old one stays.
 */
int dumpsys_configure(struct dumpdev *dev, uint32_t role, const char **why);
/* `role` stops having a dump device: DUMPTERM (before the device may be closed). */
void dumpsys_unconfigure(uint32_t role);
/* Every configured dump device stops being one (e.g. before a reboot or a fatal boot error). */
void dumpsys_terminate_all(void);
const struct dmp_query *dumpsys_query(void);		/* the primary's */
const struct dmp_query *dumpsys_query_role(uint32_t role);

/* Crash time: write the system dump, report DONE, exit. Never returns. */
void dump_system(const struct crash_record *cr) __attribute__((noreturn));

/* For the console's `dump` and `info` commands. */
void dumpsys_print_config(void);
void dumpsys_print_info(void);

/* The protocol caller (dump/dumpdev.c): thin wrappers around dev->dddump(). */
int devdump_init(struct dumpdev *dev, struct dumpio_stat *st);
int devdump_query(struct dumpdev *dev, struct dmp_query *q);
int devdump_start(struct dumpdev *dev, struct dumpio_stat *st);
/* Builds the uio (fmode: DUMP_FSYNC, DUMP_ASYNC); refuses (EINVAL) anything outside the
 * partition before calling the driver. */
int devdump_write(struct dumpdev *dev, uint64_t offset, struct iovec *iov, int iovcnt, int fmode,
		  struct dumpio_stat *st);
int devdump_end(struct dumpdev *dev, struct dumpio_stat *st);
int devdump_term(struct dumpdev *dev);

#endif
