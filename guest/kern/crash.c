/*
 * Crash entry. Every exception, every NMI and panic() arrive in trap_dispatch() with the
 * interrupted registers on the stack (arch/x86/trap_entry.S). We record the complete CPU state
 * in the crash record, report the crash, and hand over to the dump facility, which never
 * returns. Interrupts are off (they always are) and we never IRET, so NMIs stay blocked.
 */
#include <stdarg.h>

#include "kern/crash.h"
#include "arch/x86/cpu.h"
#include "arch/x86/gdt.h"
#include "arch/x86/io.h"
#include "arch/x86/pin.h"
#include "arch/x86/trap.h"
#include "dump/dumpsys.h"
#include "kern/exit.h"
#include "kern/irq.h"
#include "kern/result.h"
#include "lib/console.h"
#include "lib/dumpstate.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "lib/testfault.h"

/* Written by the crash path: dump path state (lib/dumpstate.h). panic() formats its message
 * after the host's ground truth of a crash typed at the console. */
struct crash_record crash_record __dumpstate;
static volatile int crash_depth __dumpstate;
static volatile uint32_t nested_nmis __dumpstate;
static char panic_message[128] __dumpstate;

bool crash_dump_armed;
static void (*mute_hook)(void);

void crash_set_mute_hook(void (*fn)(void))
{
	mute_hook = fn;
}

static const char *const exception_names[32] = {
	"#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
	"#BR bound range", "#UD invalid opcode", "#NM device not available", "#DF double fault",
	"coprocessor segment overrun", "#TS invalid TSS", "#NP segment not present",
	"#SS stack fault", "#GP general protection", "#PF page fault", "reserved 15",
	"#MF x87 error", "#AC alignment check", "#MC machine check", "#XM SIMD error",
	"#VE virtualization", "#CP control protection", "reserved 22", "reserved 23",
	"reserved 24", "reserved 25", "reserved 26", "reserved 27", "#HV hypervisor injection",
	"#VC VMM communication", "#SX security", "reserved 31",
};

const char *crash_reason_name(uint32_t reason)
{
	switch (reason) {
	case CRASH_REASON_NMI: return "nmi";
	case CRASH_REASON_PANIC: return "panic";
	case CRASH_REASON_EXCEPTION: return "exception";
	default: return "unknown";
	}
}

/* Everything not in the frame is read here, before anything could change it. The kernel never
 * uses x87/SSE registers (-mgeneral-regs-only), so FXSAVE still sees the interrupted state. */
static void capture(const struct trap_frame *f, uint64_t tsc)
{
	struct crash_record *r = &crash_record;
	uint64_t *regs = r->registers;

	memset(r, 0, sizeof(*r));
	memcpy(r->magic, "DBCRASH", 8);
	r->version = DUMP_VERSION;
	r->cpu = 0;
	r->tsc_crash = tsc;

	if (f->vector == VEC_NMI) {
		r->crash_reason = CRASH_REASON_NMI;
		r->crash_vector = VEC_NMI;
	} else if (f->vector == TRAP_VECTOR_PANIC) {
		r->crash_reason = CRASH_REASON_PANIC;
		r->crash_vector = CRASH_VECTOR_NONE;
	} else {
		r->crash_reason = CRASH_REASON_EXCEPTION;
		r->crash_vector = (uint32_t)f->vector;
		r->crash_error_code = f->error_code;
	}

	regs[REG_RAX] = f->rax;
	regs[REG_RBX] = f->rbx;
	regs[REG_RCX] = f->rcx;
	regs[REG_RDX] = f->rdx;
	regs[REG_RSI] = f->rsi;
	regs[REG_RDI] = f->rdi;
	regs[REG_RBP] = f->rbp;
	regs[REG_RSP] = f->rsp;
	regs[REG_R8] = f->r8;
	regs[REG_R9] = f->r9;
	regs[REG_R10] = f->r10;
	regs[REG_R11] = f->r11;
	regs[REG_R12] = f->r12;
	regs[REG_R13] = f->r13;
	regs[REG_R14] = f->r14;
	regs[REG_R15] = f->r15;
	regs[REG_RIP] = f->rip;
	regs[REG_RFLAGS] = f->rflags;
	regs[REG_CS] = f->cs & 0xffff;
	regs[REG_SS] = f->ss & 0xffff;
	regs[REG_DS] = read_ds();
	regs[REG_ES] = read_es();
	regs[REG_FS] = read_fs();
	regs[REG_GS] = read_gs();
	regs[REG_FS_BASE] = rdmsr(MSR_FS_BASE);
	regs[REG_GS_BASE] = rdmsr(MSR_GS_BASE);
	regs[REG_CR0] = read_cr0();
	regs[REG_CR2] = read_cr2();
	regs[REG_CR3] = read_cr3();
	regs[REG_CR4] = read_cr4();
	regs[REG_EFER] = rdmsr(MSR_EFER);

	if (r->crash_reason == CRASH_REASON_EXCEPTION && f->vector == VEC_PF)
		r->crash_fault_addr = regs[REG_CR2];
	if (cpu_features.fxsr)
		__asm__ __volatile__("fxsave64 %0" : "=m"(r->fxsave));
	if (testfault(TF_FPU_CLOBBER))
		memset(r->fxsave, 0, sizeof(r->fxsave));	/* deliberately wrong */
}

static void print_crash(const struct trap_frame *f)
{
	const struct crash_record *r = &crash_record;
	const uint64_t *g = r->registers;

	if (r->crash_reason == CRASH_REASON_PANIC)
		printf("\n*** PANIC: %s\n", panic_message);
	else if (f->vector < 32)
		printf("\n*** CRASH: %s (vector %llu, error code %#llx)\n", exception_names[f->vector],
		       (unsigned long long)f->vector, (unsigned long long)f->error_code);
	else
		printf("\n*** CRASH: unexpected vector %llu\n", (unsigned long long)f->vector);
	printf("rip %016llx  rsp %016llx  rflags %016llx  cs %04llx  ss %04llx\n",
	       (unsigned long long)g[REG_RIP], (unsigned long long)g[REG_RSP],
	       (unsigned long long)g[REG_RFLAGS], (unsigned long long)g[REG_CS],
	       (unsigned long long)g[REG_SS]);
	printf("rax %016llx  rbx %016llx  rcx %016llx  rdx %016llx\n", (unsigned long long)g[REG_RAX],
	       (unsigned long long)g[REG_RBX], (unsigned long long)g[REG_RCX],
	       (unsigned long long)g[REG_RDX]);
	printf("rsi %016llx  rdi %016llx  rbp %016llx  r8  %016llx\n", (unsigned long long)g[REG_RSI],
	       (unsigned long long)g[REG_RDI], (unsigned long long)g[REG_RBP],
	       (unsigned long long)g[REG_R8]);
	printf("r9  %016llx  r10 %016llx  r11 %016llx  r12 %016llx\n", (unsigned long long)g[REG_R9],
	       (unsigned long long)g[REG_R10], (unsigned long long)g[REG_R11],
	       (unsigned long long)g[REG_R12]);
	printf("r13 %016llx  r14 %016llx  r15 %016llx\n", (unsigned long long)g[REG_R13],
	       (unsigned long long)g[REG_R14], (unsigned long long)g[REG_R15]);
	printf("cr0 %016llx  cr2 %016llx  cr3 %016llx  cr4 %016llx  efer %llx\n",
	       (unsigned long long)g[REG_CR0], (unsigned long long)g[REG_CR2],
	       (unsigned long long)g[REG_CR3], (unsigned long long)g[REG_CR4],
	       (unsigned long long)g[REG_EFER]);
}

void trap_dispatch(struct trap_frame *f)
{
	uint64_t tsc = rdtsc();

	irq_disable();
	/* The crash path formats in ring 0: a crash during the boot may have come from ring 3,
	 * whose frame is where a trip's #UD would land (after READY this is off already). */
	printf_unprivileged(false);
	/* From now on an NMI (possible after any IRETQ, e.g. a ring-3 trip) gets its own stack. */
	if (!crash_depth)
		gdt_nmi_stack_for_nested();
	/* While the dump enforces pinning, a page fault may be a pinning violation: then it is
	 * recorded and execution resumes at the innermost pin_guarded_call() (no IRET, NMIs
	 * stay blocked), before crash_depth counts it as a nested crash. */
	if (f->vector == VEC_PF)
		pin_check_fault(read_cr2(), f->rip, f->error_code);
	if (crash_depth++) {
		/* A fault inside the crash path: the first crash's record stays as it was. */
		printf("\n*** nested crash: vector %llu at rip %#llx while handling a crash\n",
		       (unsigned long long)f->vector, (unsigned long long)f->rip);
		if (crash_depth == 2)
			result_line("DONE status=failed error=%d stage=nested offset=0", 14 /* EFAULT */);
		guest_exit(EXIT_DUMP_FAILED);
	}
	irqs_off_for_good = true;	/* this path never returns to the interrupted system */
	capture(f, tsc);
	pin_abandon();
	/* Interrupts are off for good; devices that could still raise one are told not to,
	 * before the (slow) console output. */
	irq_console_mute();
	if (mute_hook)
		mute_hook();
	/* The crash's and the dump's lines format in ring 3 (emulated ring 0 made the registers'
	 * lines 40 ms and a PROGRESS line 6), once the boot is over and unless the crash came from
	 * ring 3: then a trip was cut short, whose frame a new one would reuse. A nested crash's
	 * handler turns it off again (above) and formats in ring 0. */
	printf_unprivileged(crash_dump_armed && !(f->cs & 3));
	print_crash(f);

	if (!crash_dump_armed) {
		printf("crash during boot: no dump\n");
		fatal_boot_error("crash-during-boot");
	}

	if (crash_record.crash_vector == CRASH_VECTOR_NONE)
		result_line("CRASH reason=%s vector=0x%x", crash_reason_name(crash_record.crash_reason),
			    crash_record.crash_vector);
	else
		result_line("CRASH reason=%s vector=%u", crash_reason_name(crash_record.crash_reason),
			    crash_record.crash_vector);

	dump_system(&crash_record);
}

/*
 * An NMI. The first is a crash. One that arrives while a crash is handled (a second watchdog
 * expiry, a second inject-nmi: the dump's ring-3 trips end with IRETQ, which unblocks NMIs)
 * must neither start a second dump nor disturb the first: it is counted, noted on the console
 * (COM1 only, a line of its own; never on the result channel, whose lines it could split)
 * and ignored: nmi_entry returns to the dump with IRETQ.
 */
void nmi_dispatch(struct trap_frame *f)
{
	static const char note[] = "\n*** NMI during the crash dump: ignored (nested NMI ";
	uint32_t n;
	char digits[12];
	int i = sizeof(digits);

	if (!crash_depth)
		trap_dispatch(f);
	n = ++nested_nmis;
	console_write(note, sizeof(note) - 1);
	digits[--i] = '\n';
	digits[--i] = ')';
	do {
		digits[--i] = (char)('0' + n % 10);
		n /= 10;
	} while (n && i > 0);
	console_write(digits + i, sizeof(digits) - (size_t)i);
}

uint32_t crash_nested_nmis(void)
{
	return nested_nmis;
}

/* ---- deliberate crashes for the shell (docs/guest-interface.md, "Console") -------------------
 * Each raises its exception inside its own function, so the harness can check that the
 * recorded rip lies in it (guest/build/dumpbed-guest.elf64's symbols). If the exception does
 * not come, they return and the shell says so. */

void crash_test_divide_error(void)
{
	__asm__ __volatile__("xorl %%ecx, %%ecx\n\t"
			     "movl $1, %%eax\n\t"
			     "xorl %%edx, %%edx\n\t"
			     "divl %%ecx"
			     : : : "rax", "rcx", "rdx", "memory");
}

void crash_test_invalid_opcode(void)
{
	__asm__ __volatile__("ud2" : : : "memory");
}

void crash_test_general_protection(void)
{
	/* A selector past the GDT's limit: #GP with the selector as error code. */
	__asm__ __volatile__("movl %0, %%eax\n\t"
			     "movl %%eax, %%ds\n\t"
			     "movl %1, %%eax\n\t"
			     "movl %%eax, %%ds"
			     : : "i"(CRASH_TEST_GP_SELECTOR), "i"(KERNEL_DS) : "rax", "memory");
}

void crash_test_page_fault(void)
{
	/* A write (error code 0x2: not present, write, supervisor) where nothing is mapped. */
	*(volatile uint64_t *)CRASH_TEST_PF_ADDR = 0;
}

void crash_test_stack_overflow(void)
{
	/* Push until the kernel stack runs into its guard page: the #PF cannot be delivered on
	 * that stack either, so the CPU raises #DF (on its IST stack). */
	__asm__ __volatile__("1:\tpushq $0\n\t"
			     "jmp 1b"
			     : : : "memory");
}

/* ib700 (QEMU's ISA watchdog): a write to 0x443 arms it for time_map[value & 15] seconds
 * (30, 28, .. 2, 0), a write to 0x441 disarms it. On a machine without one these ports are
 * unassigned and the writes do nothing. */
#define IB700_DISABLE	0x441
#define IB700_ENABLE	0x443

void crash_test_hang(unsigned seconds)
{
	uint8_t code;

	if (seconds > 30)
		seconds = 30;
	code = (uint8_t)(15 - (seconds + 1) / 2);
	outb(IB700_ENABLE, code);
	irq_disable();
	for (;;)
		cpu_relax();
}

void panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(panic_message, sizeof(panic_message), fmt, ap);
	va_end(ap);
	crash_panic_enter();
}
