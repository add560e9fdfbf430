#ifndef DUMP_DUMPSYS_H
#define DUMP_DUMPSYS_H

#include <stdbool.h>
#include <stdint.h>

#include "dump/dumpdev.h"
#include "dump/format.h"

/* Set at the start of the crash-time sequence with testfault=irq-on: queues the dump path
 * sets up leave their device interrupts on (no VIRTQ_AVAIL_F_NO_INTERRUPT). */
extern bool dump_testfault_irq_on;

/* The configured dump device, NULL if none. */
extern struct dumpdev *dump_device;

/* Boot time: DUMPINIT and DUMPQUERY on `dev` and make it the dump device. */
int dumpsys_configure(struct dumpdev *dev, const char **why);
const struct dmp_query *dumpsys_query(void);

/* Crash time: write the system dump, report DONE, exit. Never returns. */
void dump_system(const struct crash_record *cr) __attribute__((noreturn));

/* For the console's `dump` and `info` commands. */
void dumpsys_print_config(void);
void dumpsys_print_info(void);

/* The protocol caller (dump/dumpdev.c): thin wrappers around dev->dddump(). */
int devdump_init(struct dumpdev *dev, struct dumpio_stat *st);
int devdump_query(struct dumpdev *dev, struct dmp_query *q);
int devdump_start(struct dumpdev *dev, struct dumpio_stat *st);
/* Builds the uio; refuses (EINVAL) anything outside the partition before calling the driver. */
int devdump_write(struct dumpdev *dev, uint64_t offset, struct iovec *iov, int iovcnt, bool fsync,
		  struct dumpio_stat *st);
int devdump_end(struct dumpdev *dev, struct dumpio_stat *st);
int devdump_term(struct dumpdev *dev);

#endif
