/*
 * PCI configuration mechanism #1 (ports 0xCF8/0xCFC), enumeration and BAR assignment.
 *
 * qboot leaves every BAR at 0 and every command register at 0; SeaBIOS assigns them. We keep
 * what firmware assigned and place the rest in the PCI hole above RAM, each BAR naturally
 * aligned (a BAR's alignment is its size) and clear of the BARs already in use.
 */
#include "bus/pci.h"
#include "arch/x86/apic.h"
#include "arch/x86/io.h"
#include "arch/x86/ioapic.h"
#include "arch/x86/paging.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"

#define PCI_CONFIG_ADDRESS	0xcf8
#define PCI_CONFIG_DATA		0xcfc

#define IO_WINDOW_START		0xc000
#define IO_WINDOW_END		0x10000
#define MAX_BUSY		(PCI_MAX_DEVICES * PCI_MAX_BARS)

static struct pci_dev devices[PCI_MAX_DEVICES];
static int ndevices;

struct range {
	uint64_t start, end;
};
static struct range busy_mem[MAX_BUSY], busy_io[MAX_BUSY];
static int nbusy_mem, nbusy_io;

static uint32_t cfg_address(const struct pci_dev *d, uint8_t off)
{
	return 0x80000000u | (uint32_t)d->bus << 16 | (uint32_t)d->dev << 11 | (uint32_t)d->fn << 8 |
	       (off & 0xfc);
}

uint32_t pci_cfg_read32(const struct pci_dev *d, uint8_t off)
{
	outl(PCI_CONFIG_ADDRESS, cfg_address(d, off));
	return inl(PCI_CONFIG_DATA);
}

uint16_t pci_cfg_read16(const struct pci_dev *d, uint8_t off)
{
	outl(PCI_CONFIG_ADDRESS, cfg_address(d, off));
	return inw(PCI_CONFIG_DATA + (off & 2));
}

uint8_t pci_cfg_read8(const struct pci_dev *d, uint8_t off)
{
	outl(PCI_CONFIG_ADDRESS, cfg_address(d, off));
	return inb(PCI_CONFIG_DATA + (off & 3));
}

void pci_cfg_write32(const struct pci_dev *d, uint8_t off, uint32_t v)
{
	outl(PCI_CONFIG_ADDRESS, cfg_address(d, off));
	outl(PCI_CONFIG_DATA, v);
}

void pci_cfg_write16(const struct pci_dev *d, uint8_t off, uint16_t v)
{
	outl(PCI_CONFIG_ADDRESS, cfg_address(d, off));
	outw(PCI_CONFIG_DATA + (off & 2), v);
}

void pci_cfg_write8(const struct pci_dev *d, uint8_t off, uint8_t v)
{
	outl(PCI_CONFIG_ADDRESS, cfg_address(d, off));
	outb(PCI_CONFIG_DATA + (off & 3), v);
}

void pci_set_command_bits(const struct pci_dev *d, uint16_t set, uint16_t clear)
{
	uint16_t cmd = pci_cfg_read16(d, PCI_COMMAND);

	pci_cfg_write16(d, PCI_COMMAND, (cmd & ~clear) | set);
}

/*
 * A BAR's sizing: its value, the all-ones probe, the value back, with the address written
 * once for all four accesses (each port access is a VM exit). Only pci_init() at boot does
 * this, with interrupts off: nothing else can access config space in between (an NMI or an
 * exception there is a crash, which never comes back here).
 */
static uint32_t probe_bar(const struct pci_dev *d, uint8_t off, uint32_t *orig)
{
	uint32_t probe;

	outl(PCI_CONFIG_ADDRESS, cfg_address(d, off));
	*orig = inl(PCI_CONFIG_DATA);
	outl(PCI_CONFIG_DATA, 0xffffffffu);
	probe = inl(PCI_CONFIG_DATA);
	outl(PCI_CONFIG_DATA, *orig);
	return probe;
}

/* Size the BARs with decoding off, so the all-ones probe never decodes anywhere. */
static void size_bars(struct pci_dev *d)
{
	uint16_t cmd = pci_cfg_read16(d, PCI_COMMAND);

	d->nbars = d->header_type == 0 ? 6 : d->header_type == 1 ? 2 : 0;
	pci_cfg_write16(d, PCI_COMMAND, cmd & ~(PCI_COMMAND_IO | PCI_COMMAND_MEMORY));

	for (int i = 0; i < d->nbars; i++) {
		uint8_t off = PCI_BAR0 + 4 * i;
		uint32_t orig, probe = probe_bar(d, off, &orig);
		struct pci_bar *b = &d->bar[i];

		if (probe == 0 || probe == 0xffffffffu)
			continue;

		if (orig & 1) {
			b->io = true;
			b->size = (~(probe & ~0x3u) + 1) & 0xffff;
			b->base = orig & ~0x3u;
			continue;
		}
		b->prefetchable = orig & 0x8;
		b->is64 = ((orig >> 1) & 3) == 2;
		if (b->is64 && i + 1 < d->nbars) {
			uint32_t orig_hi, probe_hi = probe_bar(d, off + 4, &orig_hi);

			b->size = ~(((uint64_t)probe_hi << 32) | (probe & ~0xfu)) + 1;
			b->base = ((uint64_t)orig_hi << 32) | (orig & ~0xfu);
			i++;	/* the upper half is not a BAR of its own */
		} else {
			b->is64 = false;
			b->size = (uint32_t)(~(probe & ~0xfu) + 1);
			b->base = orig & ~0xfu;
		}
	}
	pci_cfg_write16(d, PCI_COMMAND, cmd);
}

static void scan_bus(uint8_t bus, int depth);

static void scan_function(uint8_t bus, uint8_t dev, uint8_t fn, int depth)
{
	struct pci_dev probe = { .bus = bus, .dev = dev, .fn = fn };
	uint32_t id = pci_cfg_read32(&probe, PCI_VENDOR_ID);
	uint32_t class_rev;
	struct pci_dev *d;

	if ((id & 0xffff) == 0xffff || ndevices == PCI_MAX_DEVICES)
		return;
	d = &devices[ndevices++];
	*d = probe;
	d->vendor = id & 0xffff;
	d->device = id >> 16;
	class_rev = pci_cfg_read32(d, PCI_CLASS_REVISION);
	d->class_code = class_rev >> 24;
	d->subclass = class_rev >> 16;
	d->prog_if = class_rev >> 8;
	d->revision = class_rev;
	d->header_type = pci_cfg_read8(d, PCI_HEADER_TYPE) & 0x7f;
	size_bars(d);

	/* Follow PCI-PCI bridges only where firmware numbered the secondary bus. */
	if (d->header_type == 1 && depth < 8) {
		uint8_t secondary = pci_cfg_read8(d, PCI_SECONDARY_BUS);

		if (secondary > bus)
			scan_bus(secondary, depth + 1);
	}
}

static void scan_bus(uint8_t bus, int depth)
{
	for (uint8_t dev = 0; dev < 32; dev++) {
		struct pci_dev probe = { .bus = bus, .dev = dev, .fn = 0 };
		uint16_t vendor = pci_cfg_read16(&probe, PCI_VENDOR_ID);
		int nfn;

		if (vendor == 0xffff)
			continue;
		nfn = (pci_cfg_read8(&probe, PCI_HEADER_TYPE) & 0x80) ? 8 : 1;
		for (uint8_t fn = 0; fn < nfn; fn++)
			scan_function(bus, dev, fn, depth);
	}
}

/* Lowest naturally aligned place for `size` bytes in [lo, hi) clear of the busy ranges. */
static uint64_t find_space(const struct range *busy, int nbusy, uint64_t lo, uint64_t hi,
			   uint64_t size)
{
	uint64_t a = (lo + size - 1) & ~(size - 1);

	while (a + size <= hi && a + size > a) {
		bool moved = false;

		for (int i = 0; i < nbusy; i++) {
			if (a < busy[i].end && busy[i].start < a + size) {
				a = (busy[i].end + size - 1) & ~(size - 1);
				moved = true;
			}
		}
		if (!moved)
			return a;
	}
	return 0;
}

static void write_bar(struct pci_dev *d, int i)
{
	struct pci_bar *b = &d->bar[i];
	uint8_t off = PCI_BAR0 + 4 * i;
	uint32_t low_flags = pci_cfg_read32(d, off) & (b->io ? 0x3u : 0xfu);

	pci_cfg_write32(d, off, (uint32_t)b->base | low_flags);
	if (b->is64)
		pci_cfg_write32(d, off + 4, (uint32_t)(b->base >> 32));
}

void pci_init(uint64_t mmio_start, uint64_t mmio_end)
{
	ndevices = 0;
	nbusy_mem = nbusy_io = 0;
	scan_bus(0, 0);

	/* Everything firmware placed stays where it is. */
	for (int n = 0; n < ndevices; n++)
		for (int i = 0; i < devices[n].nbars; i++) {
			struct pci_bar *b = &devices[n].bar[i];

			if (!b->size || !b->base)
				continue;
			if (b->io)
				busy_io[nbusy_io++] = (struct range){ b->base, b->base + b->size };
			else
				busy_mem[nbusy_mem++] = (struct range){ b->base, b->base + b->size };
		}

	/* Largest first keeps natural alignment from fragmenting the window. */
	for (;;) {
		struct pci_dev *best_dev = 0;
		int best_bar = -1;
		uint64_t addr;

		for (int n = 0; n < ndevices; n++)
			for (int i = 0; i < devices[n].nbars; i++) {
				struct pci_bar *b = &devices[n].bar[i];

				if (!b->size || b->base || b->assigned_here)
					continue;
				if (!best_dev || b->size > best_dev->bar[best_bar].size) {
					best_dev = &devices[n];
					best_bar = i;
				}
			}
		if (!best_dev)
			break;

		struct pci_bar *b = &best_dev->bar[best_bar];

		b->assigned_here = true;	/* even if it does not fit: tried once */
		if (b->io) {
			addr = find_space(busy_io, nbusy_io, IO_WINDOW_START, IO_WINDOW_END, b->size);
			if (!addr)
				continue;
			busy_io[nbusy_io++] = (struct range){ addr, addr + b->size };
		} else {
			addr = find_space(busy_mem, nbusy_mem, mmio_start, mmio_end, b->size);
			if (!addr)
				continue;
			busy_mem[nbusy_mem++] = (struct range){ addr, addr + b->size };
		}
		b->base = addr;
		write_bar(best_dev, best_bar);
	}

	/* Turn decoding on for whatever is assigned; MMIO is mapped uncached. */
	for (int n = 0; n < ndevices; n++) {
		struct pci_dev *d = &devices[n];
		uint16_t set = 0;

		for (int i = 0; i < d->nbars; i++) {
			struct pci_bar *b = &d->bar[i];

			if (!b->size || !b->base)
				continue;
			if (b->io) {
				set |= PCI_COMMAND_IO;
			} else {
				set |= PCI_COMMAND_MEMORY;
				if (b->base >= (4ull << 30))
					paging_map_identity(b->base, b->size, true);
				else
					paging_set_uncached(b->base, b->size);
			}
		}
		if (set && d->header_type == 0)
			pci_set_command_bits(d, set, 0);
	}
}

int pci_device_count(void)
{
	return ndevices;
}

struct pci_dev *pci_device(int i)
{
	return i >= 0 && i < ndevices ? &devices[i] : 0;
}

struct pci_dev *pci_find(uint16_t vendor, const uint16_t *ids, int nids, int index)
{
	for (int n = 0; n < ndevices; n++) {
		if (devices[n].vendor != vendor)
			continue;
		for (int k = 0; k < nids; k++)
			if (devices[n].device == ids[k] && index-- == 0)
				return &devices[n];
	}
	return 0;
}

uint8_t pci_find_cap(const struct pci_dev *d, uint8_t cap_id, uint8_t after)
{
	uint8_t off;
	int guard = 48;	/* a malformed list must not loop forever */

	if (!(pci_cfg_read16(d, PCI_STATUS) & PCI_STATUS_CAP_LIST))
		return 0;
	off = after ? pci_cfg_read8(d, after + 1) : pci_cfg_read8(d, PCI_CAPABILITY_LIST);
	while (off >= 0x40 && guard--) {
		off &= 0xfc;
		if (pci_cfg_read8(d, off) == cap_id)
			return off;
		off = pci_cfg_read8(d, off + 1);
	}
	return 0;
}

const char *pci_class_name(const struct pci_dev *d)
{
	switch (d->class_code) {
	case 0x01: return "storage";
	case 0x02: return "network";
	case 0x03: return "display";
	case 0x06: return "bridge";
	case 0x0c: return "serial-bus";
	default: return "other";
	}
}

/* ---- runtime interrupts -------------------------------------------------------------------- */

#define PIIX3_PIRQRC		0x60	/* PIRQA..D route control: ISA IRQ, bit 7 = disabled */
#define PIIX3_PIRQ_DISABLE	0x80
#define ELCR1			0x4d0
#define ELCR2			0x4d1

/* A usable ISA IRQ for a PCI line: not the timer, keyboard, cascade, RTC, FPU, or IDE's. */
static bool isa_irq_ok(int irq)
{
	return irq >= 3 && irq <= 15 && irq != 8 && irq != 13 && irq != 14 && irq != 15 && irq != 2;
}

/*
 * The ISA IRQ a PCI function's INTx pin reaches through the PIIX3's PIRQ routing: the
 * firmware's choice if it made one, otherwise `fallback_irq`, which is then programmed (and
 * marked level-triggered in the ELCR, for the 8259s' sake). -1 without an interrupt pin or a
 * PIIX3 to route it.
 */
static int intx_to_isa_irq(const struct pci_dev *d, int fallback_irq)
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

int pci_intx_route(struct pci_dev *d, uint8_t vector, int *pin)
{
	int irq = intx_to_isa_irq(d, PCI_INTX_FALLBACK_IRQ);

	/* On QEMU's `pc` the I/O APIC's pins 1-15 are the ISA IRQs of the same number. */
	if (irq < 0 || !ioapic_route_level(irq, vector))
		return ENODEV;
	*pin = irq;
	return 0;
}

void pci_intx_unmask(int pin)
{
	ioapic_unmask(pin);
}

void pci_intx_mask(int pin)
{
	ioapic_mask(pin);
}

/* The MSI-X capability's registers and a table entry's layout. */
#define MSIX_CTRL		2
#define MSIX_TABLE		4
#define MSIX_CTRL_SIZE		0x07ff	/* table size - 1 */
#define MSIX_CTRL_MASKALL	0x4000
#define MSIX_CTRL_ENABLE	0x8000
#define MSIX_ENTRY_SIZE		16
#define MSIX_ENTRY_ADDR_LO	0
#define MSIX_ENTRY_ADDR_HI	4
#define MSIX_ENTRY_DATA		8
#define MSIX_ENTRY_VECTOR_CTRL	12
#define MSIX_VECTOR_MASKED	1
#define MSI_ADDRESS_BASE	0xfee00000u	/* + destination APIC ID << 12: physical, fixed */

int pci_msix_route(struct pci_dev *d, uint8_t cap, uint16_t entry, uint8_t vector)
{
	uint32_t table, bir;
	uintptr_t e;
	uint16_t ctl;

	if (!cap)
		return ENOTSUP;
	ctl = pci_cfg_read16(d, cap + MSIX_CTRL);
	if (entry > (ctl & MSIX_CTRL_SIZE))
		return EINVAL;
	table = pci_cfg_read32(d, cap + MSIX_TABLE);
	bir = table & 7;
	if (bir >= PCI_MAX_BARS || bir >= (uint32_t)d->nbars || d->bar[bir].io || !d->bar[bir].base)
		return ENXIO;
	e = (uintptr_t)(d->bar[bir].base + (table & ~7u) + (uint64_t)entry * MSIX_ENTRY_SIZE);

	/* Enabled with the function masked while the entry changes, then unmasked. */
	pci_cfg_write16(d, cap + MSIX_CTRL, (uint16_t)(ctl | MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL));
	mmio_write32(e + MSIX_ENTRY_VECTOR_CTRL, MSIX_VECTOR_MASKED);
	mmio_write32(e + MSIX_ENTRY_ADDR_LO, MSI_ADDRESS_BASE | (apic_id() << 12));
	mmio_write32(e + MSIX_ENTRY_ADDR_HI, 0);
	mmio_write32(e + MSIX_ENTRY_DATA, vector);	/* fixed delivery, edge */
	mmio_write32(e + MSIX_ENTRY_VECTOR_CTRL, 0);
	pci_cfg_write16(d, cap + MSIX_CTRL, (uint16_t)((ctl | MSIX_CTRL_ENABLE) & ~MSIX_CTRL_MASKALL));
	return 0;
}

void pci_msix_disable(const struct pci_dev *d, uint8_t cap)
{
	uint16_t ctl;

	if (!cap)
		return;
	ctl = pci_cfg_read16(d, cap + MSIX_CTRL);
	pci_cfg_write16(d, cap + MSIX_CTRL, (uint16_t)((ctl & ~MSIX_CTRL_ENABLE) | MSIX_CTRL_MASKALL));
}

#define MSI_CTRL		2
#define MSI_CTRL_ENABLE		0x0001

void pci_msi_disable(const struct pci_dev *d, uint8_t cap)
{
	uint16_t ctl;

	if (!cap)
		return;
	ctl = pci_cfg_read16(d, cap + MSI_CTRL);
	if (ctl & MSI_CTRL_ENABLE)
		pci_cfg_write16(d, cap + MSI_CTRL, (uint16_t)(ctl & ~MSI_CTRL_ENABLE));
}
