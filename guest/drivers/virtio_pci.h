/* Modern (virtio 1.x) virtio-pci transport. Legacy I/O-port devices are not supported. */
#ifndef DRIVERS_VIRTIO_PCI_H
#define DRIVERS_VIRTIO_PCI_H

#include <stdbool.h>
#include <stdint.h>

#include "bus/pci.h"
#include "drivers/virtio.h"

#define VIRTIO_PCI_VENDOR	0x1af4

struct virtio_pci {
	struct pci_dev *pci;
	uintptr_t common;		/* struct virtio_pci_common_cfg */
	uint32_t common_len;
	uintptr_t notify_base;
	uint32_t notify_len;
	uint32_t notify_off_multiplier;
	uintptr_t isr;
	uintptr_t device_cfg;
	uint32_t device_cfg_len;
	uint64_t device_features;	/* offered */
	uint64_t driver_features;	/* accepted */
};

/* Locate the vendor capabilities (common, notify, ISR, device config) in the BARs. */
int virtio_pci_attach(struct virtio_pci *vp, struct pci_dev *pci);

/* Reset (status 0) and wait, bounded, for the device to report the reset finished. */
int virtio_pci_reset(struct virtio_pci *vp);

/*
 * ACKNOWLEDGE | DRIVER, accept `wanted & offered` (VIRTIO_F_VERSION_1 is required), set
 * FEATURES_OK and check the device kept it. Disables INTx and MSI-X config interrupts.
 */
int virtio_pci_negotiate(struct virtio_pci *vp, uint64_t wanted);

/* Program queue `index` with memory we own; `max_size` caps the device's size. */
int virtio_pci_setup_queue(struct virtio_pci *vp, struct virtq *vq, uint16_t index,
			   struct virtq_memory *mem, uint16_t max_size);

void virtio_pci_driver_ok(struct virtio_pci *vp);
uint8_t virtio_pci_status(const struct virtio_pci *vp);
/* Kick the device for queue vq: a full barrier (the avail index before the flag), then the
 * doorbell unless the device set VIRTQ_USED_F_NO_NOTIFY (virtio 1.x, 2.7.7.2). */
void virtio_pci_notify(const struct virtio_pci *vp, const struct virtq *vq);
bool virtio_pci_has_feature(const struct virtio_pci *vp, unsigned bit);

/* DUMPINIT / DUMPTERM: pin (unpin) the register blocks the dump path uses - common
 * configuration, notify area, device configuration (arch/x86/pin.h). 0 or pin_phys's error;
 * on error nothing stays pinned. */
int virtio_pci_pin_registers(const struct virtio_pci *vp);
void virtio_pci_unpin_registers(const struct virtio_pci *vp);

/* Device-specific configuration, read consistently (config_generation checked). */
uint32_t virtio_pci_cfg_read32(const struct virtio_pci *vp, uint32_t off);
uint64_t virtio_pci_cfg_read64(const struct virtio_pci *vp, uint32_t off);

/*
 * Split virtqueue operations, the one copy the virtio drivers use (virtio-blk, virtio-scsi,
 * virtio-net).
 *
 * Adding a request: a driver owns fixed ranges of a queue's descriptors (one per request
 * slot) and builds each request's chain at the start of its slot's range, with
 * virtq_chain_begin, then virtq_chain_add for each buffer in the order the device is to see
 * them (the device-readable ones first); virtq_chain_submit publishes it (the avail ring
 * entry, then the index that makes it visible) and kicks the device (virtio_pci_notify, which
 * leaves the doorbell alone while the device's used ring says VIRTQ_USED_F_NO_NOTIFY). The
 * driver marks its slot busy before submitting: the completion may come at once. Nothing is
 * allocated: the chain's state is the caller's, the descriptors and rings are the queue's
 * memory, which a dump driver keeps in its pinned dump state (the kernel image).
 */
struct virtq_chain {
	struct virtq *vq;
	uint16_t head;		/* the first descriptor: the id the used ring gives back */
	uint16_t n;		/* descriptors added */
	uint16_t max;		/* the caller's range: head .. head + max - 1 */
};

void virtq_chain_begin(struct virtq_chain *c, struct virtq *vq, uint16_t head, uint16_t max);
/* Append a buffer (a physical address: memory is identity-mapped) that the device reads, or
 * writes if `device_writes`. false, and nothing added, when the range is full. */
bool virtq_chain_add(struct virtq_chain *c, uint64_t addr, uint32_t len, bool device_writes);
/* Publish the chain (at least one buffer) and kick the device. */
void virtq_chain_submit(const struct virtio_pci *vp, struct virtq_chain *c);
/* Publish the chain without the kick: the device sees it when it next looks at the ring (a
 * frame arriving), or at the next virtio_pci_notify (which batches several). */
void virtq_chain_publish(struct virtq_chain *c);

/* Consume the next entry of the used ring, if the device has published one: *id is the head
 * descriptor of the chain it gave back. */
bool virtq_next_used(struct virtq *vq, uint32_t *id);
/* The same, with the bytes the device wrote into the chain (a receive queue's frame). */
bool virtq_next_used_len(struct virtq *vq, uint32_t *id, uint32_t *len);

/*
 * Wait, polling, until the device gives a request back. Each round calls `back(arg)`, which
 * consumes the used entries (virtq_next_used; the driver's slots change state) and says
 * whether the awaited request is among those given back. Bounded by `deadline` (TSC,
 * arch/x86/tsc.h); the device status is read every 65536 rounds (an MMIO read is a VM exit,
 * so not on every round) and NEEDS_RESET or FAILED ends the wait: a broken device may never
 * complete. Returns 0, ETIMEDOUT or EIO; after a failure the request is still the device's
 * (the driver keeps its slot until the device gives it back).
 */
int virtq_poll_used(const struct virtio_pci *vp, uint64_t deadline, bool (*back)(void *arg), void *arg);

#endif
