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

/* Runtime interrupts are the tran's tran_intr_* hooks (scsi/hba.h): MSI-X, one vector for the
 * request queue. */

#endif
