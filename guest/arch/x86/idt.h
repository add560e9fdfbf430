#ifndef ARCH_X86_IDT_H
#define ARCH_X86_IDT_H

#include <stdint.h>

void idt_init(void);

/* Point vector vec at handler as a DPL 0 interrupt gate (IF cleared on entry), on IST stack
 * ist (0: the current stack). */
void idt_set_gate(int vec, uint64_t handler, int ist);

/* Load an empty IDT: the next exception triple-faults (used by reboot as a last resort). */
void idt_load_empty(void);

#endif
