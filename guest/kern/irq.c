/* Device interrupts for the runtime workload (see kern/irq.h). */
#include "kern/irq.h"
#include "arch/x86/apic.h"
#include "arch/x86/cpu.h"
#include "arch/x86/idt.h"
#include "arch/x86/io.h"
#include "lib/errno.h"

#define APIC_EOI		0x0b0

volatile uint64_t irq_device_count, irq_spurious_count;
static void (*device_fn)(void *arg);
static void *device_arg;
static bool installed;

int irq_init(void)
{
	if (installed)
		return 0;
	if (!apic_base())
		return ENODEV;
	idt_set_gate(IRQ_VECTOR_DEVICE, (uintptr_t)irq_device_entry, 0);
	idt_set_gate(IRQ_VECTOR_SPURIOUS, (uintptr_t)irq_spurious_entry, 0);
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
