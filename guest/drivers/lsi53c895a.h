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
 * chip interrupts off until lsi53c895a_enable_interrupts). Returns the number registered. */
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

/* The HBA's PCI function (for routing its INTx). */
struct pci_dev *lsi53c895a_pci(struct scsi_hba *hba);

/* Runtime workload: turn on the chip's interrupt enables (what ends or stops a command) and
 * its PCI INTx; they survive chip recoveries until lsi53c895a_mute or tran_quiesce. 0 or EIO. */
int lsi53c895a_enable_interrupts(struct scsi_hba *hba);

/* Crash time (NMI context, first thing): chip interrupt enables off, INTx disabled. */
void lsi53c895a_mute(struct scsi_hba *hba);

/*
 * Console self-test of HBA `index`, target `target` LUN 0: TEST UNIT READY, INQUIRY,
 * READ CAPACITY, then a non-destructive write/read round trip (saved and restored) at byte
 * offset 512 KiB of the disk, which on dumpbed disks lies between the GPT and the first
 * partition. Prints what it does; returns 0 on success.
 */
int lsi53c895a_selftest(int index, int target);

#endif
