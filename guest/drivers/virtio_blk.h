#ifndef DRIVERS_VIRTIO_BLK_H
#define DRIVERS_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "bus/pci.h"
#include "dump/dumpdev.h"

#define VIRTIO_BLK_PCI_DEVICE_MODERN	0x1042
#define VIRTIO_BLK_PCI_DEVICE_TRANSITIONAL 0x1001

struct virtio_blk;

/* Bring up the virtio-blk function `pci` (modern transport only), polled, no interrupts.
 * Only one instance is supported: the dump device. */
int virtio_blk_attach(struct pci_dev *pci, uint32_t io_timeout_ms, struct virtio_blk **out);

/* Runtime (boot-time) reads, in logical blocks. */
int virtio_blk_read(struct virtio_blk *d, uint64_t lba, void *buf, uint32_t nblocks);

uint32_t virtio_blk_block_size(const struct virtio_blk *d);
uint64_t virtio_blk_capacity_blocks(const struct virtio_blk *d);
const struct pci_dev *virtio_blk_pci(const struct virtio_blk *d);
void virtio_blk_print_info(const void *softc);

/* The dump entry point (see dump/dumpdev.h). dev->softc is the struct virtio_blk. */
int virtio_blk_dddump(struct dumpdev *dev, struct uio *uio, int cmd, void *arg);

#endif
