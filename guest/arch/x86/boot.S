/*
 * Multiboot (v1) entry: the loader leaves us in 32-bit protected mode, paging off, with
 * EAX = multiboot magic and EBX = physical address of the multiboot info.
 *
 * We record both, identity-map the first 4 GiB with 2 MiB pages, enter long mode, zero .bss
 * and call kernel_main(). What is written here (page tables, GDT, the boot TSS and IDT) holds
 * still from then on, except the kernel stack, which is dump path state (lib/dumpstate.h).
 *
 * .bss (2.6 MiB) is zeroed in ring 3: on hypervisors that emulate guest supervisor code an
 * instruction (a string instruction an iteration) at a time (arch/x86/user_entry.S), zeroing
 * it in ring 0 took 0.2 s of the boot. The trip there and back is user_call()'s, with a TSS
 * and an IDT of our own in .data, replaced by gdt_init() and idt_init().
 */
#include "arch/x86/boot.h"

#define BOOT_TSS_SIZE	104
#define BOOT_TSS_SEL	0x18		/* KERNEL_TSS (arch/x86/cpu.h) */
#define BOOT_USER_DS	0x2b		/* USER_DS, USER_CS (arch/x86/usermode.h) */
#define BOOT_USER_CS	0x33

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

	/* Of .bss only the PML4 and the PDPT are used before it is zeroed (the page directories
	 * are written whole below): they are zeroed here, the rest in long mode. */
	movl $boot_pml4, %edi
	movl $((boot_pd - boot_pml4) / 4), %ecx
	xorl %eax, %eax
	rep stosl

	/* PML4[0] -> PDPT; PDPT[0..3] -> four page directories; each PD maps 1 GiB with 2 MiB
	 * pages: the first 4 GiB, including the PCI hole (made uncached later in C). Here only the
	 * first GiB, where the kernel is: the other three page directories are written in ring 3
	 * with .bss and hooked into the PDPT after it (boot_zero_bss). */
	movl $(boot_pdpt + (PTE_P | PTE_W | PTE_U)), %eax
	movl %eax, boot_pml4
	movl $(boot_pd + (PTE_P | PTE_W | PTE_U)), %eax
	movl %eax, boot_pdpt

	/* Two entries an iteration, eax the next one (the first GiB: bits 32+ are 0). */
	movl $boot_pd, %edi
	movl $(PTE_P | PTE_W | PTE_U | PTE_PS), %eax
2:	movl %eax, (%edi)
	addl $(1 << 21), %eax
	movl %eax, 8(%edi)
	addl $(1 << 21), %eax
	addl $16, %edi
	cmpl $(boot_pd + 4096), %edi
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

	/* The boot TSS (ring 3 -> 0 lands on the kernel stack) and IDT (#UD only). */
	movl $boot_tss, %eax
	movl %eax, %edx
	andl $0xffffff, %edx
	shlq $16, %rdx
	orq $(BOOT_TSS_SIZE - 1), %rdx
	btsq $43, %rdx			/* type 9: 64-bit TSS, available */
	btsq $40, %rdx
	btsq $47, %rdx			/* present */
	shrl $24, %eax
	shlq $56, %rax
	orq %rax, %rdx
	movq %rdx, gdt + BOOT_TSS_SEL
	movq $0, gdt + BOOT_TSS_SEL + 8	/* base bits 32-63: the image is below 4 GiB */
	movw $BOOT_TSS_SEL, %ax
	ltr %ax

	movl $boot_ud_entry, %eax
	movw %ax, boot_idt + 6 * 16		/* offset 0-15 */
	movw $KERNEL_CS_SEL, boot_idt + 6 * 16 + 2
	movw $0x8e00, boot_idt + 6 * 16 + 4	/* no IST; present, DPL 0, interrupt gate */
	shrl $16, %eax
	movw %ax, boot_idt + 6 * 16 + 6		/* offset 16-31; 32-63 and the rest stay 0 */
	lidt boot_idt_descriptor

	/* To ring 3 with interrupts off (IOPL 0), the way user_call() goes. */
	movq $boot_stack_top, %rsp
	pushq $BOOT_USER_DS
	pushq $0			/* no stack: nothing is pushed in ring 3 */
	pushq $0x2
	pushq $BOOT_USER_CS
	pushq $boot_zero_bss
	iretq

	/* Ring 3: the page directories of GiB 1-3 (not in use yet: PDPT[1..3] are not present),
	 * then .bss but the page tables, the kernel stack included (no stack is in use). */
boot_zero_bss:
	movl $(boot_pd + 4096), %edi
	movl $((1 << 30) | PTE_P | PTE_W | PTE_U | PTE_PS), %eax
1:	movq %rax, (%rdi)
	addq $(1 << 21), %rax
	addq $8, %rdi
	cmpq $boot_pd_end, %rdi
	jb 1b

	xorl %eax, %eax
	movl $__bss_start, %edi
	movl $boot_pml4, %ecx
	subl %edi, %ecx
	shrl $3, %ecx
	rep stosq
	movl $boot_pd_end, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	shrl $3, %ecx
	rep stosq
boot_zero_bss_ud2:
	ud2

	/* #UD from boot_zero_bss_ud2, on the kernel stack (the boot TSS's rsp0): back in ring 0.
	 * Anything else here is a bug: stop. */
boot_ud_entry:
	cmpq $boot_zero_bss_ud2, (%rsp)
	jne 3f
	movw $KERNEL_DS_SEL, %ax	/* the trip to ring 3 nulled them */
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss

	/* GiB 1-3 are mapped from now on (not present before: no TLB entry to flush). */
	movl $(boot_pd + 4096 + (PTE_P | PTE_W | PTE_U)), %eax
	movl %eax, boot_pdpt + 8
	addl $4096, %eax
	movl %eax, boot_pdpt + 16
	addl $4096, %eax
	movl %eax, boot_pdpt + 24

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

	/* The TSS and IDT of the trip to ring 3 that zeroes .bss (gdt_init() and idt_init() load
	 * the kernel's): written before it, never after. */
	.align 16
boot_tss:
	.long 0
	.quad boot_stack_top		/* rsp0 */
	.skip 88			/* rsp1-2, ist1-7 and reserved: 0 */
	.word 0
	.word BOOT_TSS_SIZE		/* I/O map base past the limit: no port access */
	.align 16
boot_idt:
	.skip 7 * 16			/* vectors 0-6; only #UD (6) is present */
	.align 8
	.word 0
boot_idt_descriptor:
	.word 7 * 16 - 1
	.quad boot_idt

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
boot_pd_end:

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
