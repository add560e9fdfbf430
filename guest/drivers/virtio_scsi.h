/* virtio-scsi as a SCSI HBA (scsi/hba.h), on the modern virtio-pci transport. */
#ifndef DRIVERS_VIRTIO_SCSI_H
#define DRIVERS_VIRTIO_SCSI_H

#include <stdbool.h>
#include <stdint.h>

#include "scsi/hba.h"

#define VIRTIO_SCSI_PCI_DEVICE_MODERN		0x1048
#define VIRTIO_SCSI_PCI_DEVICE_TRANSITIONAL	0x1004
#define VIRTIO_SCSI_TRAN_NAME			"virtio-scsi"

/* Find every virtio-scsi function, bring it up polled and register it as an HBA. Returns the
 * number registered. */
int virtio_scsi_probe(void);

/*
 * Runtime interrupts (MSI-X, one vector for the request queue): route the request queue of
 * `hba` to IDT vector `vector` on the boot CPU's local APIC. tran_quiesce turns them off for
 * good. Returns 0 or an errno (ENOTSUP without MSI-X).
 */
int virtio_scsi_enable_interrupts(struct scsi_hba *hba, uint8_t vector);

/* Crash time, before anything else: ask the request queue not to interrupt (a store to the
 * avail ring's flags; no device access). DUMPSTART's tran_quiesce does the rest. */
void virtio_scsi_mute(struct scsi_hba *hba);

/* The interrupt handler for that vector: reap the used ring, complete runtime packets through
 * pkt_comp. The caller sends the local APIC EOI. */
void virtio_scsi_intr(struct scsi_hba *hba);

#endif
