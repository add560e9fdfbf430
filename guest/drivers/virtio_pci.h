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

#endif
