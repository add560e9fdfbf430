/*
 * NVMe, polled dump path (docs/guest.md, "NVMe"). A disk is the first active namespace of an
 * NVMe controller; `dumpdev=nvme[:N]` names the N-th controller in PCI order (dump/dumpdisk.h).
 */
#ifndef DRIVERS_NVME_H
#define DRIVERS_NVME_H

#include <stdbool.h>
#include <stdint.h>

#include "bus/pci.h"
#include "dump/dumpdev.h"

#define NVME_PCI_CLASS		0x01	/* mass storage */
#define NVME_PCI_SUBCLASS	0x08	/* non-volatile memory */
#define NVME_PCI_PROG_IF	0x02	/* NVM Express */

struct nvme_ctrl;

/* Bring up the controller: admin queue, Identify, the I/O queue pairs. `timeout_ms` bounds each
 * command. 0, ENODEV (no active namespace), ENOTSUP (a format this driver does not take) or EIO. */
int nvme_attach(struct pci_dev *pci, uint32_t timeout_ms, struct nvme_ctrl **out);
/* Runtime reads (polled), in logical blocks. */
int nvme_read(struct nvme_ctrl *c, uint64_t lba, void *buf, uint32_t nblocks);
uint32_t nvme_block_size(const struct nvme_ctrl *c);
uint64_t nvme_capacity_blocks(const struct nvme_ctrl *c);
int nvme_dddump(struct dumpdev *dev, struct uio *uio, int cmd, void *arg);
void nvme_print_info(const void *softc);

#endif
