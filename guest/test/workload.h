/*
 * The runtime workload (workload=on, shell `workload on|off`): interrupt-driven I/O on the dump
 * disk, kept in flight while the machine idles, so a crash lands in the middle of it. For any
 * dump disk whose driver offers runtime I/O (dump/dumpdev.h, dumpdev_runtime_io); the region is
 * the first MiB of the data partition (GPT type Linux data), never the dump partition; each
 * chunk is read, stamped and written back.
 */
#ifndef TEST_WORKLOAD_H
#define TEST_WORKLOAD_H

#include <stdbool.h>

/* 0, or an errno with *why saying what is missing (one line). */
int workload_start(const char **why);
/* Stop requeueing and wait (bounded, interrupts on) for what is in flight. */
void workload_stop(void);
bool workload_running(void);
/* Once started, the shell's idle hook restarts what the completion path could not, and its
 * info hook prints the region and counters (kern/shell.h). */

#endif
