#include "kern/exit.h"
#include "arch/x86/cpu.h"
#include "arch/x86/idt.h"
#include "arch/x86/io.h"
#include "arch/x86/tsc.h"
#include "kern/result.h"
#include "lib/printf.h"

#define DEBUG_EXIT_PORT 0xf4

void guest_exit(unsigned value)
{
	outl(DEBUG_EXIT_PORT, value);
	/* Without an isa-debug-exit device we are still here: stop for good. NMIs stay
	 * blocked on the crash path, so this halts until the host gives up on us. */
	printf("exit 0x%x: no isa-debug-exit device, halting\n", value);
	cpu_halt_forever();
}

void fatal_boot_error(const char *msg)
{
	printf("fatal boot error: %s\n", msg);
	result_line("ERROR msg=%s", msg);
	guest_exit(EXIT_BOOT_ERROR);
}

void reboot(void)
{
	printf("rebooting\n");
	outb(0xcf9, 0x02);	/* PIIX reset control: system reset */
	outb(0xcf9, 0x06);
	udelay(10000);
	outb(0x64, 0xfe);	/* keyboard controller reset line */
	udelay(10000);
	idt_load_empty();	/* last resort: triple fault */
	__asm__ __volatile__("int3");
	cpu_halt_forever();
}
