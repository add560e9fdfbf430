/* Device interrupts for the runtime workload (see kern/irq.h). */
#include "kern/irq.h"
#include "arch/x86/apic.h"
#include "arch/x86/cpu.h"
#include "arch/x86/idt.h"
#include "arch/x86/ioapic.h"
#include "arch/x86/io.h"
#include "lib/errno.h"
#include "lib/serial.h"
#include "lib/testfault.h"

#define APIC_EOI		0x0b0

volatile uint64_t irq_device_count, irq_spurious_count;
static void (*device_fn)(void *arg);
static void *device_arg;
static bool installed;
static bool console_routed;	/* set once by the shell, before any crash can read it */

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

bool irq_console_init(void)
{
	if (!serial_present() || irq_init())
		return false;
	idt_set_gate(IRQ_VECTOR_CONSOLE, (uintptr_t)irq_console_entry, 0);
	if (!ioapic_route_edge(IRQ_CONSOLE_PIN, IRQ_VECTOR_CONSOLE))
		return false;
	ioapic_unmask(IRQ_CONSOLE_PIN);
	console_routed = true;
	return true;
}

void irq_console_wait(void)
{
	irq_off();	/* so the interrupt cannot come between here and the HLT, and be missed */
	serial_rx_interrupt(true);
	/* STI's one-instruction shadow: an interrupt already pending is taken at the HLT. */
	__asm__ __volatile__("sti; hlt; cli" ::: "memory");
}

void irq_console_dispatch(void)
{
	serial_rx_interrupt(false);	/* the line drops; the shell reads the byte */
	mmio_write32(apic_base() + APIC_EOI, 0);
}

void irq_console_mute(void)
{
	if (!console_routed)
		return;
	if (testfault(TF_CONSOLE_IRQ_LIVE)) {	/* deliberately wrong: a key typed now interrupts */
		serial_rx_interrupt(true);
		return;
	}
	ioapic_mask(IRQ_CONSOLE_PIN);
	serial_rx_interrupt(false);
}
