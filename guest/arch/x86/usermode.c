/* Ring 3 support (see arch/x86/user_entry.S). */
#include "arch/x86/usermode.h"
#include "lib/dumpstate.h"

bool usermode_ready;
uint64_t user_calls __dumpstate;	/* counted on the dump path too: dump path state */

void usermode_init(void)
{
	/* The user segments are in the GDT (boot.S), the page tables carry the user bit, the TSS
	 * has a ring 0 stack (gdt.c) and #UD brings us back (idt.c): nothing else to set up. */
	usermode_ready = true;
}
