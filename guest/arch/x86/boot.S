/*
 * Multiboot (v1) entry: the loader leaves us in 32-bit protected mode, paging off, with
 * EAX = multiboot magic and EBX = physical address of the multiboot info.
 *
 * We record both, zero .bss, identity-map the first 4 GiB with 2 MiB pages, enter long mode
 * and call kernel_main(). What is written here (page tables, GDT) holds still from then on,
 * except the kernel stack, which is dump path state (lib/dumpstate.h).
 */
#include "arch/x86/boot.h"

#define MB_MAGIC	0x1badb002
#define MB_FLAGS	0x00000003	/* page-align modules, provide memory info/map */

	.section .multiboot, "a"
	.align 4
multiboot_header:
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.section .text.boot, "ax"
	.code32
	.globl boot_entry32
boot_entry32:
	cli
	cld
	movl %eax, boot_multiboot_magic
	movl %ebx, boot_multiboot_info

	/* Zero .bss: the multiboot info is outside the image, so this cannot clobber it. */
	movl $__bss_start, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	shrl $2, %ecx
	xorl %eax, %eax
	rep stosl

	movl $boot_stack_top, %esp

	/* PML4[0] -> PDPT; PDPT[0..3] -> four page directories; each PD maps 1 GiB. */
	movl $boot_pdpt, %eax
	orl $(PTE_P | PTE_W | PTE_U), %eax
	movl %eax, boot_pml4

	movl $boot_pd, %eax
	orl $(PTE_P | PTE_W | PTE_U), %eax
	xorl %ecx, %ecx
1:	movl %eax, boot_pdpt(, %ecx, 8)
	addl $4096, %eax
	incl %ecx
	cmpl $4, %ecx
	jb 1b

	/* 2048 2 MiB pages: the first 4 GiB, including the PCI hole (made uncached later in C). */
	xorl %ecx, %ecx
2:	movl %ecx, %eax
	shll $21, %eax
	orl $(PTE_P | PTE_W | PTE_U | PTE_PS), %eax
	movl %eax, boot_pd(, %ecx, 8)
	movl %ecx, %eax
	shrl $11, %eax			/* bits 32+ of the address: ecx >> 11 */
	movl %eax, boot_pd + 4(, %ecx, 8)
	incl %ecx
	cmpl $2048, %ecx
	jb 2b

	movl %cr4, %eax
	orl $CR4_PAE, %eax
	movl %eax, %cr4

	movl $boot_pml4, %eax
	movl %eax, %cr3

	movl $MSR_EFER_NUM, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr

	movl %cr0, %eax
	orl $(CR0_PG | CR0_PE_BIT), %eax
	movl %eax, %cr0

	lgdt gdt_descriptor
	ljmp $KERNEL_CS_SEL, $long_mode_entry

	.code64
long_mode_entry:
	movw $KERNEL_DS_SEL, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	xorl %eax, %eax
	movw %ax, %fs
	movw %ax, %gs

	movq $boot_stack_top, %rsp
	xorl %ebp, %ebp
	call kernel_main
3:	cli
	hlt
	jmp 3b

	.section .data
	.align 16
	/* The CPU writes the accessed bit of descriptors and the busy bit of the TSS
	 * descriptor: the GDT must be in writable memory. Every descriptor is marked accessed
	 * already and ltr (boot) sets the busy bit, so after boot nothing writes it: it is not
	 * dump path state, and the dump compares it with memory at the crash. */
	.globl gdt
gdt:
	.quad 0				/* null */
	.quad 0x00af9b000000ffff	/* 0x08: 64-bit code, DPL 0, accessed */
	.quad 0x00cf93000000ffff	/* 0x10: data, DPL 0, accessed */
	.quad 0				/* 0x18: TSS (16 bytes), filled by gdt_init() */
	.quad 0
	.quad 0x00cff3000000ffff	/* 0x28: data, DPL 3, accessed */
	.quad 0x00affb000000ffff	/* 0x30: 64-bit code, DPL 3, accessed */
gdt_end:

	.globl gdt_descriptor
	.align 8
	.word 0
gdt_descriptor:
	.word gdt_end - gdt - 1
	.quad gdt

	.globl boot_multiboot_magic, boot_multiboot_info
	.align 4
boot_multiboot_magic:
	.long 0
boot_multiboot_info:
	.long 0

	.section .bss
	.align 4096
	.globl boot_pml4, boot_pdpt, boot_pd
boot_pml4:
	.skip 4096
boot_pdpt:
	.skip 4096
boot_pd:
	.skip 4 * 4096

	/* The page below the kernel stack is left unmapped (paging_guard_kernel_stack()): a
	 * stack overflow faults there, and since the #PF cannot be pushed either, becomes a #DF
	 * on its own IST stack. linker.ld puts it right under the kernel stack, the first thing
	 * in the dump path's state (a crash typed at the console runs its handler and the dump
	 * on this stack): the guard is never written, the stack is. */
	.section .bss.kstack_guard, "aw", @nobits
	.align 4096
	.globl boot_stack_guard
boot_stack_guard:
	.skip 4096

	.section .bss.dumpstate.kstack, "aw", @nobits
	.align 4096
	.globl boot_stack_bottom, boot_stack_top
boot_stack_bottom:
	.skip BOOT_STACK_SIZE
boot_stack_top:

	.section .note.GNU-stack, "", @progbits
