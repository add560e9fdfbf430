/* Constants shared by the assembly entry code and C. */
#ifndef ARCH_X86_BOOT_H
#define ARCH_X86_BOOT_H

#define PTE_P		0x001
#define PTE_W		0x002
#define PTE_U		0x004
#define PTE_PWT		0x008
#define PTE_PCD		0x010
#define PTE_PS		0x080

#define CR0_PE_BIT	0x00000001
#define CR0_PG		0x80000000
#define CR4_PAE		0x00000020
#define MSR_EFER_NUM	0xc0000080
#define EFER_LME	0x00000100

#define KERNEL_CS_SEL	0x08
#define KERNEL_DS_SEL	0x10

#define BOOT_STACK_SIZE	(16 * 1024)

#ifndef __ASSEMBLER__
#include <stdint.h>

extern uint64_t boot_pml4[512];
extern uint64_t boot_pdpt[512];
extern uint64_t boot_pd[4 * 512];
extern char boot_stack_bottom[], boot_stack_top[];
extern char boot_stack_guard[];	/* 4 KiB, unmapped once paging_guard_kernel_stack() ran */
extern uint32_t boot_multiboot_magic, boot_multiboot_info;

/* Image bounds from linker.ld. */
extern char __kernel_start[], __kernel_end[];
extern char __text_start[], __text_end[];
extern char __rodata_start[], __rodata_end[];
extern char __data_start[], __bss_start[], __bss_end[];
#endif

#endif
