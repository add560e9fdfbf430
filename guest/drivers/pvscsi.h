/* VMware PVSCSI (QEMU's -device pvscsi) as a SCSI HBA (scsi/hba.h). */
#ifndef DRIVERS_PVSCSI_H
#define DRIVERS_PVSCSI_H

#include <stdbool.h>
#include <stdint.h>

#include "scsi/hba.h"

#define PVSCSI_PCI_VENDOR	0x15ad
#define PVSCSI_PCI_DEVICE	0x07c0
#define PVSCSI_TRAN_NAME	"pvscsi"

/* Find every PVSCSI function, reset it, set up its rings and register it as an HBA (polled:
 * every interrupt source off until tran_intr_enable). Returns the number registered. */
int pvscsi_probe(void);

#endif
