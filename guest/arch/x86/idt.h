#ifndef ARCH_X86_IDT_H
#define ARCH_X86_IDT_H

void idt_init(void);

/* Load an empty IDT: the next exception triple-faults (used by reboot as a last resort). */
void idt_load_empty(void);

#endif
