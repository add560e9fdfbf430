#ifndef BUS_PCI_H
#define BUS_PCI_H

#include <stdbool.h>
#include <stdint.h>

#define PCI_VENDOR_ID		0x00
#define PCI_DEVICE_ID		0x02
#define PCI_COMMAND		0x04
#define PCI_STATUS		0x06
#define PCI_CLASS_REVISION	0x08
#define PCI_HEADER_TYPE		0x0e
#define PCI_BAR0		0x10
#define PCI_SECONDARY_BUS	0x19
#define PCI_CAPABILITY_LIST	0x34

#define PCI_COMMAND_IO		0x0001
#define PCI_COMMAND_MEMORY	0x0002
#define PCI_COMMAND_MASTER	0x0004
#define PCI_COMMAND_INTX_DISABLE 0x0400
#define PCI_STATUS_CAP_LIST	0x0010

#define PCI_CAP_ID_MSI		0x05
#define PCI_CAP_ID_MSIX		0x11
#define PCI_CAP_ID_VNDR		0x09

#define PCI_MAX_DEVICES		64
#define PCI_MAX_BARS		6

struct pci_bar {
	uint64_t base;		/* 0: not assigned (or not implemented) */
	uint64_t size;		/* 0: not implemented */
	bool io;
	bool is64;		/* occupies this BAR and the next */
	bool prefetchable;
	bool assigned_here;	/* we assigned it (firmware had left it 0) */
};

struct pci_dev {
	uint8_t bus, dev, fn;
	uint16_t vendor, device;
	uint8_t class_code, subclass, prog_if, revision;
	uint8_t header_type;	/* without the multifunction bit */
	int nbars;
	struct pci_bar bar[PCI_MAX_BARS];
};

uint8_t pci_cfg_read8(const struct pci_dev *d, uint8_t off);
uint16_t pci_cfg_read16(const struct pci_dev *d, uint8_t off);
uint32_t pci_cfg_read32(const struct pci_dev *d, uint8_t off);
void pci_cfg_write8(const struct pci_dev *d, uint8_t off, uint8_t v);
void pci_cfg_write16(const struct pci_dev *d, uint8_t off, uint16_t v);
void pci_cfg_write32(const struct pci_dev *d, uint8_t off, uint32_t v);

/* Enumerate bus 0 (and buses behind bridges the firmware numbered), size every BAR and
 * assign the unassigned ones: memory BARs from [mmio_start, mmio_end), naturally aligned. */
void pci_init(uint64_t mmio_start, uint64_t mmio_end);

int pci_device_count(void);
struct pci_dev *pci_device(int i);
/* The index-th function (0-based, scan order) with this vendor and one of the device ids. */
struct pci_dev *pci_find(uint16_t vendor, const uint16_t *devices, int ndevices, int index);
/* Offset of the first capability with this id at or after `start` in the list (0 = from the
 * beginning), or 0. */
uint8_t pci_find_cap(const struct pci_dev *d, uint8_t cap_id, uint8_t after);
void pci_set_command_bits(const struct pci_dev *d, uint16_t set, uint16_t clear);
const char *pci_class_name(const struct pci_dev *d);

/*
 * Runtime device interrupts (kern/irq.h), for the drivers' interrupt hooks (scsi/hba.h
 * tran_intr_*, dump/dumpdev.h runtime_io). Nothing here is needed by a dump path: it is polled.
 *
 * INTx: pci_intx_route brings the function's interrupt pin through the PIIX3's PIRQ routing
 * (QEMU's i440FX swizzle) to an ISA IRQ - the firmware's choice, or PCI_INTX_FALLBACK_IRQ,
 * programmed (and marked level in the ELCR) when the firmware left the PIRQ unrouted, as qboot
 * does - and to the I/O APIC pin of that ISA IRQ (the same number on QEMU's `pc`): `vector`,
 * fixed, this CPU, active high, level-triggered, left masked; the 8259s stay masked. 0 with
 * *pin set, or ENODEV (no interrupt pin, not on bus 0, no PIIX3, no such I/O APIC pin). The
 * driver turns its device's interrupt on, then calls pci_intx_unmask. pci_intx_mask is safe
 * at any time, also first thing at a crash in NMI context (two I/O APIC register writes, no
 * read) - but not from a dump path under pinning enforcement: the I/O APIC is never pinned.
 */
#define PCI_INTERRUPT_LINE	0x3c
#define PCI_INTERRUPT_PIN	0x3d
#define PCI_INTX_FALLBACK_IRQ	11
int pci_intx_route(struct pci_dev *d, uint8_t vector, int *pin);
void pci_intx_unmask(int pin);
void pci_intx_mask(int pin);

/*
 * MSI-X: pci_msix_route programs entry `entry` of the table of the MSI-X capability at `cap`
 * (pci_find_cap(d, PCI_CAP_ID_MSIX, 0)) to deliver `vector` to this CPU's local APIC (fixed,
 * edge), unmasks that entry and enables MSI-X, function unmasked. Which of the device's
 * sources signal that entry is the device's business (e.g. virtio's queue vector). 0, ENOTSUP
 * (no capability), EINVAL (no such entry) or ENXIO (the table is not in an assigned memory
 * BAR). pci_msix_disable: MSI-X off, function masked (configuration space only).
 */
int pci_msix_route(struct pci_dev *d, uint8_t cap, uint16_t entry, uint8_t vector);
void pci_msix_disable(const struct pci_dev *d, uint8_t cap);

/* MSI off (the MSI capability at `cap`, pci_find_cap(d, PCI_CAP_ID_MSI, 0); 0: none, nothing
 * to do). Configuration space only. */
void pci_msi_disable(const struct pci_dev *d, uint8_t cap);

#endif
