#ifndef KERN_CRASH_H
#define KERN_CRASH_H

#include <stdbool.h>

#include "dump/format.h"

/* The interrupted CPU state of the (first) crash, in the format's layout. */
extern struct crash_record crash_record;

/* Set once boot is complete: a crash before that is a fatal boot error, not a dump. */
extern bool crash_dump_armed;

/* Print a message and crash with reason PANIC, recording the caller's registers. */
void panic(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

const char *crash_reason_name(uint32_t reason);

/* A driver that enabled a device interrupt (the runtime workload) registers how to silence
 * it; the crash handler calls it first thing, before printing anything. One hook. */
void crash_set_mute_hook(void (*fn)(void));

#endif
