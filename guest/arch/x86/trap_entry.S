/*
 * Exception, NMI and panic entry.
 *
 * Every IDT vector has a 16-byte stub that makes the stack look the same for all vectors
 * (error code, then vector number) and jumps to trap_common, which pushes all general
 * purpose registers and calls trap_dispatch(struct trap_frame *) in C. Nothing here returns:
 * in this kernel every exception and every NMI is a crash, so the interrupted state is
 * recorded exactly as the CPU left it and never resumed. The one exception is an NMI that
 * arrives during a crash (nmi_entry below): it is ignored and the crash path resumes.
 *
 * Frame layout (low to high addresses), see struct trap_frame in arch/x86/trap.h:
 *   rax rbx rcx rdx rsi rdi rbp r8..r15, vector, error_code, rip, cs, rflags, rsp, ss
 */
#include "arch/x86/trap.h"

	.section .text
	.code64

.macro trap_stub vec
	.align TRAP_STUB_SIZE
	.if (\vec == 8) || (\vec == 10) || (\vec == 11) || (\vec == 12) || (\vec == 13) || (\vec == 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
	/* the CPU pushed an error code */
	.else
	pushq $0
	.endif
	pushq $\vec
	jmp trap_common
.endm

	.align TRAP_STUB_SIZE
	.globl trap_stubs
trap_stubs:
	.altmacro
	.set vec, 0
	.rept 256
	trap_stub %vec
	.set vec, vec + 1
	.endr
	.noaltmacro

.macro push_gprs
	pushq %r15
	pushq %r14
	pushq %r13
	pushq %r12
	pushq %r11
	pushq %r10
	pushq %r9
	pushq %r8
	pushq %rbp
	pushq %rdi
	pushq %rsi
	pushq %rdx
	pushq %rcx
	pushq %rbx
	pushq %rax
.endm

trap_common:
	cld
	push_gprs
	movq %rsp, %rdi
	andq $-16, %rsp			/* ABI alignment; we never come back here */
	call trap_dispatch
1:	cli
	hlt
	jmp 1b

/*
 * NMI entry (IST stack). The first NMI is a crash like any exception. An NMI that arrives while
 * a crash is being handled (NMIs are unblocked by the IRETQ of every ring-3 trip the dump makes)
 * is counted and ignored by nmi_dispatch(), which then returns here: the registers go back and
 * IRETQ resumes the dump. By then the TSS gives NMIs a stack of their own (gdt.c), so this frame
 * never overwrites the dump's.
 */
	.globl nmi_entry
nmi_entry:
	pushq $0			/* no error code */
	pushq $VEC_NMI
	cld
	push_gprs
	movq %rsp, %rdi
	movq %rsp, %rbx			/* saved above; restored by the pops */
	andq $-16, %rsp
	call nmi_dispatch		/* returns only for an NMI during a crash */
	movq %rbx, %rsp
	popq %rax
	popq %rbx
	popq %rcx
	popq %rdx
	popq %rsi
	popq %rdi
	popq %rbp
	popq %r8
	popq %r9
	popq %r10
	popq %r11
	popq %r12
	popq %r13
	popq %r14
	popq %r15
	addq $16, %rsp			/* vector, error code */
	iretq

/*
 * void crash_panic_enter(void): build the frame an interrupt taken at our return address
 * would have produced, so a panic records the caller's registers the same way an NMI does.
 * The recorded rip is the return address and rsp the caller's stack pointer after return.
 */
	.globl crash_panic_enter
crash_panic_enter:
	pushq $0			/* ss, filled below */
	pushq $0			/* rsp */
	pushfq				/* rflags as the caller had them */
	cli
	pushq $0			/* cs */
	pushq $0			/* rip */
	pushq $0			/* error code */
	pushq $TRAP_VECTOR_PANIC
	cld
	push_gprs
	/* rax is saved: use it to fill the placeholders. 176(%rsp) is our return address. */
	movq TRAP_FRAME_SIZE(%rsp), %rax
	movq %rax, TRAP_FRAME_RIP(%rsp)
	leaq TRAP_FRAME_SIZE + 8(%rsp), %rax
	movq %rax, TRAP_FRAME_RSP(%rsp)
	movq %cs, %rax
	movq %rax, TRAP_FRAME_CS(%rsp)
	movq %ss, %rax
	movq %rax, TRAP_FRAME_SS(%rsp)
	movq TRAP_FRAME_RAX(%rsp), %rax
	movq %rsp, %rdi
	andq $-16, %rsp
	call trap_dispatch
2:	cli
	hlt
	jmp 2b

	.section .note.GNU-stack, "", @progbits
