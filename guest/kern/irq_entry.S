/*
 * Entries of the device and console interrupt vectors: the only code in this kernel that
 * returns from an interrupt. Interrupts are only ever enabled in the ring 0 idle loop (never in
 * ring 3, never on the crash path), so the frame is always a ring 0 one on the kernel stack, which
 * the CPU has aligned to 16 bytes before pushing its 40-byte frame. The kernel is built with
 * -mno-red-zone and without SSE, so the caller-saved general registers are all there is to save.
 */
	.section .text
	.code64

.macro IRQ_ENTRY name, dispatch
	.globl \name
\name:
	cld
	pushq %rax
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11			/* 40 + 72 bytes: the stack is 16-byte aligned again */
	call \dispatch
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rax
	iretq
.endm

	IRQ_ENTRY irq_device_entry, irq_device_dispatch
	IRQ_ENTRY irq_console_entry, irq_console_dispatch

/* The local APIC's spurious vector: no EOI, nothing to do. */
	.globl irq_spurious_entry
irq_spurious_entry:
	lock incq irq_spurious_count(%rip)
	iretq

	.section .note.GNU-stack, "", @progbits
