/* The register frame built by arch/x86/trap_entry.S. */
#ifndef ARCH_X86_TRAP_H
#define ARCH_X86_TRAP_H

#define TRAP_STUB_SIZE		16
#define TRAP_VECTOR_PANIC	0x100	/* not a CPU vector: software panic */

#define TRAP_FRAME_RAX		0
#define TRAP_FRAME_VECTOR	120
#define TRAP_FRAME_ERROR	128
#define TRAP_FRAME_RIP		136
#define TRAP_FRAME_CS		144
#define TRAP_FRAME_RFLAGS	152
#define TRAP_FRAME_RSP		160
#define TRAP_FRAME_SS		168
#define TRAP_FRAME_SIZE		176

#define VEC_NMI		2
#define VEC_UD		6
#define VEC_DF		8
#define VEC_PF		14
#define VEC_MC		18

#ifndef __ASSEMBLER__
#include <stdint.h>

struct trap_frame {
	uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp;
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t vector, error_code;
	/* pushed by the CPU (or by crash_panic_enter) */
	uint64_t rip, cs, rflags, rsp, ss;
};

_Static_assert(sizeof(struct trap_frame) == TRAP_FRAME_SIZE, "trap frame layout");
_Static_assert(__builtin_offsetof(struct trap_frame, vector) == TRAP_FRAME_VECTOR, "vector");
_Static_assert(__builtin_offsetof(struct trap_frame, rip) == TRAP_FRAME_RIP, "rip");
_Static_assert(__builtin_offsetof(struct trap_frame, ss) == TRAP_FRAME_SS, "ss");

extern char trap_stubs[];

void trap_dispatch(struct trap_frame *frame) __attribute__((noreturn));
/* The NMI vector: a crash, or (during one) counted and ignored; then it returns to nmi_entry. */
void nmi_dispatch(struct trap_frame *frame);
void nmi_entry(void);
void crash_panic_enter(void) __attribute__((noreturn));
#endif

#endif
