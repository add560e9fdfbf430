/*
 * The runtime workload (workload=on, shell `workload on|off`): interrupt-driven I/O on the
 * SCSI dump disk's HBA, kept in flight while the machine idles, so a crash lands in the middle
 * of it. For a dump disk on virtio-scsi (MSI-X) or the LSI 53C895A (INTx via the I/O APIC);
 * the region is the first MiB of the data partition, never the dump partition, and every
 * block written is written back unchanged.
 */
#ifndef TEST_WORKLOAD_H
#define TEST_WORKLOAD_H

#include <stdbool.h>

/* 0, or an errno with *why saying what is missing. */
int workload_start(const char **why);
/* Stop requeueing and wait (bounded, interrupts on) for what is in flight. */
void workload_stop(void);
bool workload_running(void);
/* The idle loop's part: restart what the completion path could not. */
void workload_idle(void);

#endif
