/*
 * A minimal setjmp/longjmp for arch/x86/pin.c's recovery contexts (no libc here).
 *
 *   int pin_setjmp(struct pin_jmp *j)            0 when saving, v when resumed
 *   void pin_longjmp(struct pin_jmp *j, int v)   never returns; v == 0 becomes 1
 *
 * struct pin_jmp: rbx, rbp, r12, r13, r14, r15, rsp (after pin_setjmp returns), rip.
 *
 * pin_longjmp is used from the page-fault path, possibly for a fault taken in ring 3 (a
 * user_call() trip): the CPU then left null selectors in ds/es/ss, so it reloads them with the
 * kernel data selector, as user_ud_entry does after a normal trip. It leaves RFLAGS as the
 * fault handler has them (IF = 0) apart from DF, and it does not IRET: NMIs stay blocked.
 */
#include "arch/x86/boot.h"

	.section .text
	.code64

	.globl pin_setjmp
pin_setjmp:
	movq %rbx, 0(%rdi)
	movq %rbp, 8(%rdi)
	movq %r12, 16(%rdi)
	movq %r13, 24(%rdi)
	movq %r14, 32(%rdi)
	movq %r15, 40(%rdi)
	leaq 8(%rsp), %rax		/* the stack pointer once we have returned */
	movq %rax, 48(%rdi)
	movq (%rsp), %rax		/* our return address */
	movq %rax, 56(%rdi)
	xorl %eax, %eax
	ret

	.globl pin_longjmp
pin_longjmp:
	movl $KERNEL_DS_SEL, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	cld
	movl %esi, %eax
	testl %eax, %eax
	jnz 1f
	incl %eax
1:	movq 0(%rdi), %rbx
	movq 8(%rdi), %rbp
	movq 16(%rdi), %r12
	movq 24(%rdi), %r13
	movq 32(%rdi), %r14
	movq 40(%rdi), %r15
	movq 48(%rdi), %rsp
	jmpq *56(%rdi)

	.section .note.GNU-stack, "", @progbits
