/*
 * The console commands that are test fixtures, apart from the product shell (kern/shell.c):
 * the deliberate crashes (docs/guest-interface.md, "Crash commands"), the self-tests, stopping
 * the dump disk, and the runtime workload. Each registers itself with SHELL_COMMAND
 * (kern/shell.h); the shell knows none of them by name.
 */
#include "kern/shell.h"
#include "arch/x86/apic.h"
#include "arch/x86/tsc.h"
#include "dump/dumpsys.h"
#include "kern/crash.h"
#include "kern/irq.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "scsi/scsi.h"
#include "scsi/sd.h"
#include "test/disk_selftest.h"
#include "test/lsi_selftest.h"
#include "test/selftest.h"
#include "test/workload.h"

static void cmd_selftest(const char *args)
{
	selftest_run();
}
SHELL_COMMAND(060, "selftest", "the dump facility's API self-tests (SELFTEST lines)", cmd_selftest);

static void cmd_panic(const char *args) { panic("requested from the console"); }
SHELL_COMMAND(070, "panic", "crash now (reason PANIC) and dump", cmd_panic);

static void cmd_nmi(const char *args)
{
	printf("sending an NMI to myself\n");
	apic_self_nmi();
	/* The NMI is taken at once; if it is not, say so rather than pretend. */
	udelay(100000);
	printf("no NMI arrived (is the local APIC present?)\n");
}
SHELL_COMMAND(080, "nmi", "crash through a self-NMI from the local APIC and dump", cmd_nmi);

/* The deliberate exceptions (kern/crash.c). They return only if the exception did not come. */
static void no_exception(const char *what)
{
	printf("no %s was raised\n", what);
}

static void cmd_divide_error(const char *args)
{
	crash_test_divide_error();
	no_exception("#DE");
}
SHELL_COMMAND(090, "divide-error", "crash with #DE (divide by zero)", cmd_divide_error);

static void cmd_invalid_opcode(const char *args)
{
	crash_test_invalid_opcode();
	no_exception("#UD");
}
SHELL_COMMAND(100, "invalid-opcode", "crash with #UD (ud2)", cmd_invalid_opcode);

static void cmd_general_protection(const char *args)
{
	crash_test_general_protection();
	no_exception("#GP");
}
SHELL_COMMAND(110, "general-protection", "crash with #GP (a selector past the GDT, error code 0x80)",
	      cmd_general_protection);

static void cmd_page_fault(const char *args)
{
	crash_test_page_fault();
	no_exception("#PF");
}
SHELL_COMMAND(120, "page-fault", "crash with #PF (a write to unmapped 0xdead0000bad, error code 0x2)",
	      cmd_page_fault);

static void cmd_double_fault(const char *args)
{
	crash_test_stack_overflow();
	no_exception("#DF");
}
SHELL_COMMAND(130, "double-fault", "overflow the kernel stack into its guard page: #PF, then #DF",
	      cmd_double_fault);

/* hang [SECONDS]: arm the ib700 watchdog (default 2 s) and spin with interrupts off. */
static void cmd_hang(const char *args)
{
	unsigned seconds = 2;

	if (isdigit(*args)) {
		seconds = 0;
		while (isdigit(*args) && seconds < 100)
			seconds = seconds * 10 + (unsigned)(*args++ - '0');
	}
	if (*args || seconds < 2 || seconds > 30 || seconds % 2) {
		printf("hang [SECONDS]: SECONDS is even, 2..30\n");
		return;
	}
	printf("hanging with interrupts off; the ib700 watchdog expires in %u s\n", seconds);
	crash_test_hang(seconds);
}
SHELL_COMMAND(140, "hang", "[SECONDS]: arm the ib700 watchdog (2 s), spin with interrupts off", cmd_hang);

/* The dump device's sd unit, if the dump device is a SCSI disk. */
static struct sd_unit *dump_sd_unit(void)
{
	if (!dump_device || dump_device->dddump != sd_dddump) {
		printf("the dump device is not a SCSI disk\n");
		return 0;
	}
	return dump_device->softc;
}

static void cmd_stop_disk(const char *args)
{
	struct sd_unit *un = dump_sd_unit();
	int err;

	if (!un)
		return;
	err = sd_start_stop(un, false);
	if (err)
		printf("START STOP UNIT (stop) failed: %s\n", errno_name(err));
	else
		printf("dump disk stopped (START STOP UNIT, start=0); a dump starts it again\n");
}
SHELL_COMMAND(150, "stop-disk", "stop the SCSI dump disk (START STOP UNIT, start=0)", cmd_stop_disk);

/* workload on|off: interrupt-driven I/O on the SCSI dump disk while the shell idles. */
static void cmd_workload(const char *args)
{
	const char *why = "";
	int err;

	if (strcmp(args, "on") == 0) {
		err = workload_start(&why);
		if (err)
			printf("workload: cannot start: %s (%s)\n", why, errno_name(err));
		else
			printf("workload: running (interrupts on while the shell idles)\n");
	} else if (strcmp(args, "off") == 0) {
		workload_stop();
		printf("workload: stopped\n");
	} else if (!*args) {
		printf("workload: %s, %llu device interrupts, %llu spurious\n",
		       workload_running() ? "on" : "off", (unsigned long long)irq_device_count,
		       (unsigned long long)irq_spurious_count);
	} else {
		printf("usage: workload on|off\n");
	}
}
SHELL_COMMAND(160, "workload", "[on|off]: interrupt-driven I/O on the SCSI dump disk while idle",
	      cmd_workload);

/* lsi-selftest [HBA [TARGET]]: exercise an LSI 53C895A and a disk behind it (test/lsi_selftest.c). */
static void cmd_lsi_selftest(const char *args)
{
	int v[2] = { 0, 0 };

	for (int i = 0; i < 2 && *args; i++) {
		v[i] = 0;
		while (isdigit(*args) && v[i] < 1000)
			v[i] = v[i] * 10 + (*args++ - '0');
		while (isspace(*args))
			args++;
	}
	scsi_hba_probe_all();
	lsi_selftest_run(v[0], v[1]);
}
SHELL_COMMAND(170, "lsi-selftest", "[N [T]]: test LSI HBA N, target T (writes 256 KiB at 512 KiB, restored)",
	      cmd_lsi_selftest);

/* disktest: the dump disk's dddump with scatter lists the writer never makes (test/disk_selftest.c). */
static void cmd_disktest(const char *args)
{
	(void)args;
	disk_selftest_run();
}
SHELL_COMMAND(175, "disktest", "write patterns to the dump partition in odd scatter lists (the disk is then as after a dump)",
	      cmd_disktest);
