/* The LSI 53C895A parallel SCSI HBA (QEMU's lsi53c895a) as an HBA of scsi/hba.h. */
#ifndef DRIVERS_LSI53C895A_H
#define DRIVERS_LSI53C895A_H

#include <stdbool.h>
#include <stdint.h>

#include "scsi/hba.h"

#define LSI_PCI_VENDOR			0x1000
#define LSI_PCI_DEVICE_53C895A		0x0012
#define LSI_TRAN_NAME			"lsi53c895a"

/* Find every 53C895A function, reset it, load our SCRIPTS and register it as an HBA (polled,
 * chip interrupts off until tran_intr_enable). Returns the number registered. */
int lsi53c895a_probe(void);

struct pci_dev;

/*
 * Service the chip once: if the command in flight has finished (or failed, or passed its
 * deadline), complete it. For runtime packets (no FLAG_NOINTR) this is the completion path:
 * call it from a poll loop or from the interrupt handler wired to the chip's INTx. Status
 * that no runtime command waits for is read and dropped (the line must go low). Returns 1 if
 * a packet was completed.
 */
int lsi53c895a_intr(struct scsi_hba *hba);

/* Runtime interrupts are the tran's tran_intr_* hooks (scsi/hba.h): the chip's enables and its
 * PCI INTx, through the PIIX3 and a level-triggered I/O APIC pin (bus/pci.h). */

/*
 * For the console self-test (test/lsi_selftest.c), which finds HBA N with
 * scsi_hba_find(LSI_TRAN_NAME, N): the number of HBAs registered, and two of an HBA's
 * counters - phase mismatches taken (a short transfer in a data move) and SCSI bus resets
 * issued (recoveries, RESET_ALL, quiesce).
 */
struct lsi53c895a_stats {
	uint64_t mismatches;
	uint64_t bus_resets;
};
int lsi53c895a_count(void);
struct lsi53c895a_stats lsi53c895a_get_stats(struct scsi_hba *hba);

#endif
