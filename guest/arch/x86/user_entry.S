/*
 * Running a pure function in ring 3: uint64_t user_call(fn, a0, a1, a2).
 *
 * Why: on some hypervisors (the PVM flavour of KVM on nested hosts) guest supervisor code is
 * emulated instruction by instruction, while guest user code runs natively. The heavy loops
 * of this kernel (RAM fill, CRC32C over the dump) are pure computations over identity-mapped
 * memory, so they run in ring 3 at native speed; everything that touches devices stays in
 * ring 0. Interrupts stay disabled in ring 3 too (IRET with IF=0; IOPL 0 keeps it that way).
 *
 * We enter ring 3 with IRETQ on a dedicated user stack; the function returns into a
 * trampoline that executes UD2. The #UD handler recognises that exact instruction coming from
 * ring 3, restores the kernel stack saved at entry and returns from user_call() with the
 * function's result in rax. (An exception is the one way back from ring 3 that every
 * hypervisor must deliver faithfully; PVM mishandles SYSCALL and INT n from a guest that is not
 * PVM-aware.) Not reentrant; every stack used lives in .bss (the dump path's state).
 */
#include "arch/x86/trap.h"
#include "arch/x86/usermode.h"

	.section .text
	.code64

	.globl user_call
user_call:
	pushq %rbp
	pushq %rbx
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	pushfq
	movq %rsp, user_saved_ksp(%rip)

	movq %rdi, %rax			/* fn */
	movq %rsi, %rdi			/* its three arguments */
	movq %rdx, %rsi
	movq %rcx, %rdx

	/* Ring 3 runs with the caller's IF (always 0, except under testfault=irq-on), IOPL=0. */
	movq user_saved_ksp(%rip), %r11
	movq (%r11), %r11		/* the flags pushfq saved */
	andq $0x200, %r11
	orq $0x2, %r11

	pushq $USER_DS			/* ss */
	pushq $user_stack_top		/* rsp */
	pushq %r11			/* rflags */
	pushq $USER_CS			/* cs */
	pushq $user_trampoline		/* rip */
	iretq

user_trampoline:
	call *%rax
user_trampoline_ud2:
	ud2

/* IDT vector 6 (#UD). Frame: rip, cs, rflags, rsp, ss (no error code). */
	.globl user_ud_entry
user_ud_entry:
	testb $3, 8(%rsp)		/* from ring 3 ... */
	jz 1f
	cmpq $user_trampoline_ud2, (%rsp)	/* ... at our trampoline's UD2: a return */
	jne 1f
	movq user_saved_ksp(%rip), %rsp
	movl $KERNEL_DS_SELECTOR, %ecx	/* the trip to ring 3 nulled them */
	movl %ecx, %ds
	movl %ecx, %es
	movl %ecx, %ss
	popfq
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbx
	popq %rbp
	ret
1:	jmp trap_stubs + 6 * TRAP_STUB_SIZE	/* any other #UD is a crash */

	/* All of it is written by the dump's ring-3 trips: dump path state (lib/dumpstate.h). */
	.section .bss.dumpstate, "aw", @nobits
	.align 16
user_saved_ksp:
	.skip 8
	.align 16
	.globl user_stack_bottom, user_stack_top
user_stack_bottom:
	.skip USER_STACK_SIZE
user_stack_top:
	.globl ring0_stack_bottom, ring0_stack_top
ring0_stack_bottom:
	.skip RING0_STACK_SIZE
ring0_stack_top:

	.section .note.GNU-stack, "", @progbits
