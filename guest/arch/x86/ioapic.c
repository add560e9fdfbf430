/* The I/O APIC and the PIIX3's PIRQ routing (see ioapic.h). */
#include "arch/x86/ioapic.h"
#include "arch/x86/apic.h"
#include "arch/x86/io.h"
#include "arch/x86/paging.h"
#include "bus/pci.h"
#include "lib/dumpstate.h"

#define IOAPIC_BASE		0xfec00000u	/* QEMU's (and the MP/ACPI tables') default */
#define IOREGSEL		0x00
#define IOWIN			0x10
#define IOAPIC_VER		0x01
#define IOAPIC_REDTBL(n)	(0x10 + 2 * (n))
#define RTE_MASKED		(1u << 16)
#define RTE_LEVEL		(1u << 15)

#define PCI_INTERRUPT_LINE	0x3c
#define PCI_INTERRUPT_PIN	0x3d
#define PIIX3_PIRQRC		0x60	/* PIRQA..D route control: ISA IRQ, bit 7 = disabled */
#define PIIX3_PIRQ_DISABLE	0x80
#define ELCR1			0x4d0
#define ELCR2			0x4d1

static bool mapped;
/* What we wrote: no read-modify-write in NMI context. Dump path state (lib/dumpstate.h): the
 * crash's mute hook masks the workload's pin. */
static uint32_t rte_low[256] __dumpstate;

static void ioapic_write(uint8_t reg, uint32_t v)
{
	mmio_write32(IOAPIC_BASE + IOREGSEL, reg);
	mmio_write32(IOAPIC_BASE + IOWIN, v);
}

static uint32_t ioapic_read(uint8_t reg)
{
	mmio_write32(IOAPIC_BASE + IOREGSEL, reg);
	return mmio_read32(IOAPIC_BASE + IOWIN);
}

/* A usable ISA IRQ for a PCI line: not the timer, keyboard, cascade, RTC, FPU, or IDE's. */
static bool isa_irq_ok(int irq)
{
	return irq >= 3 && irq <= 15 && irq != 8 && irq != 13 && irq != 14 && irq != 15 && irq != 2;
}

int pci_intx_to_isa_irq(const struct pci_dev *d, int fallback_irq)
{
	static const uint16_t piix3[] = { 0x7000 };
	const struct pci_dev *isa = pci_find(0x8086, piix3, 1, 0);
	uint8_t pin = pci_cfg_read8(d, PCI_INTERRUPT_PIN), route;
	int pirq, irq;

	if (pin < 1 || pin > 4 || !isa || d->bus != 0 || !isa_irq_ok(fallback_irq))
		return -1;
	/* QEMU's i440FX swizzle (pci_slot_get_pirq): (INTx + slot - 1) mod 4. */
	pirq = (pin - 1 + d->dev - 1) & 3;
	route = pci_cfg_read8(isa, (uint8_t)(PIIX3_PIRQRC + pirq));
	if (!(route & PIIX3_PIRQ_DISABLE) && isa_irq_ok(route & 0x0f)) {
		irq = route & 0x0f;
	} else {
		irq = fallback_irq;
		pci_cfg_write8(isa, (uint8_t)(PIIX3_PIRQRC + pirq), (uint8_t)irq);
	}
	/* Level-triggered for the 8259s too (they stay masked, but say the truth). */
	if (irq < 8)
		outb(ELCR1, inb(ELCR1) | (uint8_t)(1u << irq));
	else
		outb(ELCR2, inb(ELCR2) | (uint8_t)(1u << (irq - 8)));
	pci_cfg_write8(d, PCI_INTERRUPT_LINE, (uint8_t)irq);
	return irq;
}

bool ioapic_route_level(int pin, uint8_t vector)
{
	if (!mapped) {
		paging_set_uncached(IOAPIC_BASE, 4096);
		mapped = true;
	}
	if (pin < 0 || pin > (int)((ioapic_read(IOAPIC_VER) >> 16) & 0xff))
		return false;
	ioapic_write((uint8_t)IOAPIC_REDTBL(pin), RTE_MASKED);
	ioapic_write((uint8_t)(IOAPIC_REDTBL(pin) + 1), apic_id() << 24);
	rte_low[pin] = RTE_MASKED | RTE_LEVEL | vector;
	ioapic_write((uint8_t)IOAPIC_REDTBL(pin), rte_low[pin]);
	return true;
}

void ioapic_unmask(int pin)
{
	rte_low[pin] &= ~RTE_MASKED;
	ioapic_write((uint8_t)IOAPIC_REDTBL(pin), rte_low[pin]);
}

void ioapic_mask(int pin)
{
	rte_low[pin] |= RTE_MASKED;
	ioapic_write((uint8_t)IOAPIC_REDTBL(pin), rte_low[pin]);
}
