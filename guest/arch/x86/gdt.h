#ifndef ARCH_X86_GDT_H
#define ARCH_X86_GDT_H

#include <stdint.h>

/* Interrupt stack table slots (1-based, as in the IDT gate). */
#define IST_NMI	1
#define IST_DF	2
#define IST_MC	3

void gdt_init(void);

/* Bounds of the NMI stack: the dump normally runs on it. */
extern char nmi_stack_bottom[], nmi_stack_top[];

#endif
