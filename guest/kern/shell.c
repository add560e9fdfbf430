/*
 * The console shell for manual crash-injection sessions. Input is polled from COM1 (there
 * are no interrupts); the loop only touches .bss, so the machine state a crash captures is
 * the same as the one the harness snapshots.
 */
#include "kern/shell.h"
#include "arch/x86/apic.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "arch/x86/tsc.h"
#include "bus/pci.h"
#include "drivers/lsi53c895a.h"
#include "dump/dumpsys.h"
#include "dump/facility.h"
#include "dump/ras.h"
#include "dump/registry.h"
#include "kern/cmdline.h"
#include "kern/crash.h"
#include "kern/exit.h"
#include "kern/irq.h"
#include "kern/memmap.h"
#include "test/selftest.h"
#include "test/workload.h"
#include "lib/console.h"
#include "lib/crc.h"
#include "lib/dumpstate.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "scsi/scsi.h"
#include "scsi/sd.h"

#define LINE_MAX 128

struct command {
	const char *name;
	const char *help;
	void (*run)(const char *args);
};

static void cmd_help(const char *args);
static void cmd_info(const char *args) { shell_print_info(); }
static void cmd_dump(const char *args) { dumpsys_print_config(); }
static void cmd_panic(const char *args) { panic("requested from the console"); }
static void cmd_reboot(const char *args) { reboot(); }

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

/* lsi-selftest [HBA [TARGET]]: exercise an LSI 53C895A and a disk behind it (see the driver). */
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
	lsi53c895a_selftest(v[0], v[1]);
}

static void cmd_nmi(const char *args)
{
	printf("sending an NMI to myself\n");
	apic_self_nmi();
	/* The NMI is taken at once; if it is not, say so rather than pretend. */
	udelay(100000);
	printf("no NMI arrived (is the local APIC present?)\n");
}

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

static void cmd_invalid_opcode(const char *args)
{
	crash_test_invalid_opcode();
	no_exception("#UD");
}

static void cmd_general_protection(const char *args)
{
	crash_test_general_protection();
	no_exception("#GP");
}

static void cmd_page_fault(const char *args)
{
	crash_test_page_fault();
	no_exception("#PF");
}

static void cmd_double_fault(const char *args)
{
	crash_test_stack_overflow();
	no_exception("#DF");
}

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

/* A decimal number 0..CD_LVL_MAX and nothing else; -1 otherwise. */
static int parse_level(const char *s)
{
	int v = 0;

	if (!isdigit(*s))
		return -1;
	while (isdigit(*s) && v <= CD_LVL_MAX)
		v = v * 10 + (*s++ - '0');
	return *s || v > CD_LVL_MAX ? -1 : v;
}

/* estimate [LEVEL]: what each enabled component would dump at that level (every level
 * without an argument), one line per level: ESTIMATE level=N total=BYTES name=BYTES ... */
static char estimate_line[64 * DMP_MAX_COMPONENTS];
static size_t estimate_len;

static void estimate_each(const char *name, uint64_t bytes)
{
	int n;

	if (estimate_len >= sizeof(estimate_line))
		return;
	n = snprintf(estimate_line + estimate_len, sizeof(estimate_line) - estimate_len, " %s=%llu",
		     name, (unsigned long long)bytes);
	if (n > 0)
		estimate_len += (size_t)n;
}

static void print_estimate(uint32_t level)
{
	uint64_t total;

	estimate_len = 0;
	estimate_line[0] = '\0';
	total = dmp_estimate_at(level, estimate_each);
	printf("ESTIMATE level=%u total=%llu%s\n", level, (unsigned long long)total, estimate_line);
}

static void cmd_estimate(const char *args)
{
	int level;

	if (!*args) {
		for (uint32_t v = 0; v <= CD_LVL_MAX; v++)
			print_estimate(v);
		return;
	}
	level = parse_level(args);
	if (level < 0)
		printf("usage: estimate [LEVEL], LEVEL 0..%d\n", CD_LVL_MAX);
	else
		print_estimate((uint32_t)level);
}

/* dumpctl: the registered components; dumpctl level N | on NAME | off NAME: the
 * administrator's settings, sent to the RAS components' callbacks. */
static void dumpctl_list(void)
{
	for (int i = 0; i < dmp_nregistry; i++) {
		const struct dmp_reg *r = &dmp_registry[i];
		const struct ras_block *rb = r->rb;

		if (!rb) {
			printf("  %-18.32s dmp_ctl flags=%#x%s%s", r->name, r->dmpc_flags,
			       r->dmpc_flags & DMPFUNC_CALL_ON_RESTART ? " call-on-restart" : "",
			       r->dmpc_flags & DMPFUNC_GLOBAL_BUFFER ? " global-buffer" : "");
			if (r->bsize)
				printf(" bsize=%llu", (unsigned long long)r->bsize);
			printf("\n");
			continue;
		}
		printf("  %-18.32s ras     %s level=%u", r->name, rb->enabled ? "on " : "off", rb->level);
		if (rb->staging_bytes)
			printf(" private-staging=%llu", (unsigned long long)rb->staging_bytes);
		if (rb->shared_request)
			printf(" shared-staging=%llu", (unsigned long long)rb->shared_request);
		printf("%s%s%s\n", rb->call_on_restart ? " call-on-restart" : "",
		       rb->serialio ? " serialio" : "", rb->customized ? "" : " (not customized)");
	}
}

static void cmd_dumpctl(const char *args)
{
	const char *name;
	int level, i, err;
	bool on;

	if (!*args) {
		dumpctl_list();
		return;
	}
	if (strncmp(args, "level", 5) == 0 && isspace(args[5])) {
		level = parse_level(args + 6);
		if (level < 0) {
			printf("usage: dumpctl level N, N 0..%d\n", CD_LVL_MAX);
			return;
		}
		ras_admin_level_all((uint32_t)level);
		printf("dumpctl: level %d sent to every RAS component\n", level);
		return;
	}
	on = strncmp(args, "on", 2) == 0 && isspace(args[2]);
	if (!on && !(strncmp(args, "off", 3) == 0 && isspace(args[3]))) {
		printf("usage: dumpctl [level N | on NAME | off NAME]\n");
		return;
	}
	name = args + (on ? 2 : 3);
	while (isspace(*name))
		name++;
	i = dmp_registry_find_name(name);
	if (i < 0) {
		printf("dumpctl: no component '%s'\n", name);
		return;
	}
	if (!dmp_registry[i].rb) {
		printf("dumpctl: %s is a dmp_ctl routine: only RAS components are switched on and off\n",
		       name);
		return;
	}
	err = ras_admin_enable(dmp_registry[i].rb, on);
	if (err)
		printf("dumpctl: %s: %s\n", name, errno_name(err));
	else
		printf("dumpctl: %s is %s\n", name, dmp_registry[i].rb->enabled ? "on" : "off");
}

static void cmd_selftest(const char *args)
{
	selftest_run();
}

static const struct command commands[] = {
	{ "help", "list commands", cmd_help },
	{ "info", "memory map, PCI devices, dump device", cmd_info },
	{ "dump", "show the dump configuration and planned layout", cmd_dump },
	{ "dumpctl", "[level N | on NAME | off NAME]: components, their settings; change them",
	  cmd_dumpctl },
	{ "estimate", "[LEVEL]: each component's dump estimate at LEVEL (every level 0..9)",
	  cmd_estimate },
	{ "selftest", "the dump facility's API self-tests (SELFTEST lines)", cmd_selftest },
	{ "panic", "crash now (reason PANIC) and dump", cmd_panic },
	{ "nmi", "crash through a self-NMI from the local APIC and dump", cmd_nmi },
	{ "divide-error", "crash with #DE (divide by zero)", cmd_divide_error },
	{ "invalid-opcode", "crash with #UD (ud2)", cmd_invalid_opcode },
	{ "general-protection", "crash with #GP (a selector past the GDT, error code 0x80)",
	  cmd_general_protection },
	{ "page-fault", "crash with #PF (a write to unmapped 0xdead0000bad, error code 0x2)",
	  cmd_page_fault },
	{ "double-fault", "overflow the kernel stack into its guard page: #PF, then #DF",
	  cmd_double_fault },
	{ "hang", "[SECONDS]: arm the ib700 watchdog (2 s), spin with interrupts off",
	  cmd_hang },
	{ "stop-disk", "stop the SCSI dump disk (START STOP UNIT, start=0)", cmd_stop_disk },
	{ "workload", "[on|off]: interrupt-driven I/O on the SCSI dump disk while idle", cmd_workload },
	{ "lsi-selftest", "[N [T]]: test LSI HBA N, target T (writes 256 KiB at 512 KiB, restored)",
	  cmd_lsi_selftest },
	{ "reboot", "reset the machine", cmd_reboot },
};

static void cmd_help(const char *args)
{
	for (unsigned i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		printf("  %-12s %s\n", commands[i].name, commands[i].help);
}

void shell_print_info(void)
{
	uint64_t kstart = (uintptr_t)__kernel_start, kend = (uintptr_t)__kernel_end;

	printf("cpu: %s family %u model %u, tsc %llu Hz%s, crc32c %s\n", cpu_features.vendor,
	       cpu_features.family, cpu_features.model, (unsigned long long)tsc_hz,
	       tsc_calibrated ? "" : " (NOT calibrated)", crc32c_uses_hw() ? "sse4.2" : "table");
	if (cpu_features.hypervisor)
		printf("hypervisor: '%s' '%s'\n", cpu_features.hv_vendor[0], cpu_features.hv_vendor[1]);
	printf("kernel: %#llx-%#llx (text %#lx, rodata %#lx, data+bss %#lx bytes, of which dumpstate "
	       "%#lx at %#lx)\n",
	       (unsigned long long)kstart, (unsigned long long)kend,
	       (unsigned long)(__text_end - __text_start), (unsigned long)(__rodata_end - __rodata_start),
	       (unsigned long)(__kernel_end - __data_start),
	       (unsigned long)(__dumpstate_end - __dumpstate_start), (unsigned long)(uintptr_t)__dumpstate_start);
	printf("memory map (%llu bytes usable):\n", (unsigned long long)memmap_usable_bytes());
	for (int i = 0; i < memmap_count(); i++) {
		const struct mem_region *r = memmap_region(i);

		printf("  %#014llx-%#014llx %s\n", (unsigned long long)r->base,
		       (unsigned long long)(r->base + r->len), memmap_type_name(r->type));
	}
	printf("pci devices:\n");
	for (int i = 0; i < pci_device_count(); i++) {
		const struct pci_dev *d = pci_device(i);

		printf("  %02x:%02x.%x %04x:%04x %s (class %02x%02x)\n", d->bus, d->dev, d->fn, d->vendor,
		       d->device, pci_class_name(d), d->class_code, d->subclass);
		for (int b = 0; b < d->nbars; b++) {
			const struct pci_bar *bar = &d->bar[b];

			if (!bar->size)
				continue;
			printf("      bar%d %s %#llx size %#llx%s%s\n", b, bar->io ? "io " : "mem",
			       (unsigned long long)bar->base, (unsigned long long)bar->size,
			       bar->is64 ? " 64-bit" : "", bar->assigned_here ? " (assigned here)" : "");
		}
	}
	dumpsys_print_info();
}

static void run_line(char *line)
{
	char *p = line, *end, *args;

	while (isspace(*p))
		p++;
	end = p + strlen(p);
	while (end > p && isspace(end[-1]))
		*--end = '\0';
	if (!*p)
		return;
	/* The first word names the command; the rest (blanks skipped) are its arguments. */
	args = p;
	while (*args && !isspace(*args))
		args++;
	if (*args) {
		*args++ = '\0';
		while (isspace(*args))
			args++;
	}
	for (unsigned i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(p, commands[i].name) == 0) {
			commands[i].run(args);
			return;
		}
	printf("unknown command '%s' (try help)\n", p);
}

void shell_run(void)
{
	static char line[LINE_MAX];
	size_t len = 0;
	bool after_cr = false;

	printf("dumpbed> ");
	for (;;) {
		int c;

		/* With the workload on, the idle loop is where its interrupts are taken: IF = 1
		 * here and only here (commands run with IF = 0). */
		if (workload_running()) {
			workload_idle();
			irq_on();
		}
		c = console_getc();
		if (c < 0) {
			cpu_relax();
			continue;
		}
		irq_off();
		if (c == '\n' && after_cr) {	/* the \n of a \r\n pair */
			after_cr = false;
			continue;
		}
		after_cr = c == '\r';
		if (c == '\r' || c == '\n') {
			/* The command runs on a copy: `line` changes only while it is typed, so a
			 * crash the command causes finds it as the host's ground truth (taken
			 * before the Enter) does; the copy is on the kernel stack, dump path state. */
			char cmd[LINE_MAX];

			console_putc('\n');
			memcpy(cmd, line, len);
			cmd[len] = '\0';
			run_line(cmd);
			len = 0;
			printf("dumpbed> ");
		} else if (c == 0x7f || c == 0x08) {
			if (len) {
				len--;
				console_write("\b \b", 3);
			}
		} else if (c == 0x15) {	/* ^U: kill line */
			while (len) {
				len--;
				console_write("\b \b", 3);
			}
		} else if (c >= 0x20 && c < 0x7f && len < LINE_MAX - 1) {
			line[len++] = (char)c;
			console_putc((char)c);
		}
	}
}
