/* The I/O APIC (see ioapic.h). */
#include "arch/x86/ioapic.h"
#include "arch/x86/apic.h"
#include "arch/x86/io.h"
#include "arch/x86/paging.h"
#include "lib/dumpstate.h"

#define IOAPIC_BASE		0xfec00000u	/* QEMU's (and the MP/ACPI tables') default */
#define IOREGSEL		0x00
#define IOWIN			0x10
#define IOAPIC_VER		0x01
#define IOAPIC_REDTBL(n)	(0x10 + 2 * (n))
#define RTE_MASKED		(1u << 16)
#define RTE_LEVEL		(1u << 15)


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

static bool route(int pin, uint8_t vector, uint32_t trigger)
{
	if (!mapped) {
		paging_set_uncached(IOAPIC_BASE, 4096);
		mapped = true;
	}
	if (pin < 0 || pin > (int)((ioapic_read(IOAPIC_VER) >> 16) & 0xff))
		return false;
	ioapic_write((uint8_t)IOAPIC_REDTBL(pin), RTE_MASKED);
	ioapic_write((uint8_t)(IOAPIC_REDTBL(pin) + 1), apic_id() << 24);
	rte_low[pin] = RTE_MASKED | trigger | vector;
	ioapic_write((uint8_t)IOAPIC_REDTBL(pin), rte_low[pin]);
	return true;
}

bool ioapic_route_level(int pin, uint8_t vector)
{
	return route(pin, vector, RTE_LEVEL);
}

bool ioapic_route_edge(int pin, uint8_t vector)
{
	return route(pin, vector, 0);
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
