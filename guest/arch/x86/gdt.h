#ifndef ARCH_X86_GDT_H
#define ARCH_X86_GDT_H

#include <stdint.h>

/* Interrupt stack table slots (1-based, as in the IDT gate). */
#define IST_NMI	1
#define IST_DF	2
#define IST_MC	3

void gdt_init(void);

/* From the first crash on, NMIs get a stack of their own: the dump may be running on the NMI
 * stack (an NMI crash), and an NMI that arrives after an IRET (every ring-3 trip of the dump
 * ends NMI blocking) must not overwrite its frames. */
void gdt_nmi_stack_for_nested(void);

/* Bounds of the NMI stack: the dump normally runs on it. */
extern char nmi_stack_bottom[], nmi_stack_top[];

#endif
