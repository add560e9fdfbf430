/* Device interrupts for the runtime workload (see kern/irq.h). */
#include "kern/irq.h"
#include "arch/x86/apic.h"
#include "arch/x86/cpu.h"
#include "arch/x86/io.h"
#include "lib/errno.h"

#define APIC_EOI		0x0b0
#define GATE_INTERRUPT_DPL0	0x8e	/* present, DPL 0, 64-bit interrupt gate (clears IF) */

/* The layout of a long mode IDT gate (as arch/x86/idt.c builds them). */
struct gate {
	uint16_t offset_low;
	uint16_t selector;
	uint8_t ist;
	uint8_t type_attr;
	uint16_t offset_mid;
	uint32_t offset_high;
	uint32_t reserved;
} __attribute__((packed));

struct idtr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

volatile uint64_t irq_device_count, irq_spurious_count;
static void (*device_fn)(void *arg);
static void *device_arg;
static bool installed;

/* Point an IDT vector at our entry, in the table the CPU uses (found with SIDT). */
static void set_gate(int vec, void (*entry)(void))
{
	struct idtr idtr;
	struct gate *g;
	uint64_t off = (uintptr_t)entry;

	__asm__ __volatile__("sidt %0" : "=m"(idtr));
	g = (struct gate *)(uintptr_t)idtr.base + vec;
	g->offset_low = off & 0xffff;
	g->selector = KERNEL_CS;
	g->ist = 0;
	g->offset_mid = (off >> 16) & 0xffff;
	g->offset_high = (uint32_t)(off >> 32);
	g->reserved = 0;
	barrier();
	g->type_attr = GATE_INTERRUPT_DPL0;
}

int irq_init(void)
{
	if (installed)
		return 0;
	if (!apic_base())
		return ENODEV;
	set_gate(IRQ_VECTOR_DEVICE, irq_device_entry);
	set_gate(IRQ_VECTOR_SPURIOUS, irq_spurious_entry);
	installed = true;
	return 0;
}

bool irq_ready(void) { return installed; }

void irq_set_device_handler(void (*fn)(void *arg), void *arg)
{
	device_arg = arg;
	barrier();
	device_fn = fn;
}

void irq_device_dispatch(void)
{
	irq_device_count++;
	if (device_fn)
		device_fn(device_arg);
	mmio_write32(apic_base() + APIC_EOI, 0);
}
