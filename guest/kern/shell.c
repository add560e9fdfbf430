/*
 * The console shell for manual crash-injection sessions. Input is read from COM1; between keys
 * the CPU halts until COM1's receive interrupt (kern/irq.h, irq_console_wait). The loop only
 * touches .bss and the kernel stack, so the machine state a crash captures is the same as the
 * one the harness snapshots. The commands come from the SHELL_COMMAND linker
 * set (kern/shell.h): the product's are here, the test fixtures' (crashes, self-tests, the
 * workload) in test/shell_cmds.c.
 */
#include "kern/shell.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "arch/x86/tsc.h"
#include "bus/pci.h"
#include "dump/dumpsys.h"
#include "dump/facility.h"
#include "dump/ras.h"
#include "dump/registry.h"
#include "kern/cmdline.h"
#include "kern/exit.h"
#include "kern/irq.h"
#include "kern/memmap.h"
#include "lib/console.h"
#include "lib/crc.h"
#include "lib/dumpstate.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "lib/testfault.h"

static bool (*idle_hook)(void);
static void (*info_hook)(void);

#define LINE_MAX 128

/* The commands (SHELL_COMMAND, kern/shell.h), in help's order. */
extern const struct shell_command __shell_commands_start[], __shell_commands_end[];

static void cmd_help(const char *args)
{
	for (const struct shell_command *c = __shell_commands_start; c < __shell_commands_end; c++)
		printf("  %-12s %s\n", c->name, c->help);
}
SHELL_COMMAND(010, "help", "list commands", cmd_help);

static void cmd_info(const char *args) { shell_print_info(); }
SHELL_COMMAND(020, "info", "memory map, PCI devices, dump device", cmd_info);

static void cmd_dump(const char *args) { dumpsys_print_config(); }
SHELL_COMMAND(030, "dump", "show the dump configuration and planned layout", cmd_dump);

static void cmd_reboot(const char *args) { reboot(); }
SHELL_COMMAND(900, "reboot", "reset the machine", cmd_reboot);

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
SHELL_COMMAND(050, "estimate", "[LEVEL]: each component's dump estimate at LEVEL (every level 0..9)",
	      cmd_estimate);

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

SHELL_COMMAND(040, "dumpctl", "[level N | on NAME | off NAME]: components, their settings; change them",
	      cmd_dumpctl);

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
	if (info_hook)
		info_hook();
}

void shell_set_idle_hook(bool (*idle)(void)) { idle_hook = idle; }
void shell_set_info_hook(void (*print)(void)) { info_hook = print; }

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
	for (const struct shell_command *c = __shell_commands_start; c < __shell_commands_end; c++)
		if (strcmp(p, c->name) == 0) {
			c->run(args);
			return;
		}
	printf("unknown command '%s' (try help)\n", p);
}

void shell_run(void)
{
	static char line[LINE_MAX];
	size_t len = 0;
	bool after_cr = false;
	bool halt_for_keys = irq_console_init();

	printf("dumpbed> ");
	for (;;) {
		int c;

		/* Runtime I/O's interrupts are taken here and only here (see shell_set_idle_hook). */
		bool busy = idle_hook && idle_hook();

		if (busy)
			irq_on();
		c = console_getc();
		if (c < 0) {
			/* Nothing typed: halt until a key, unless the workload needs the loop
			 * (testfault=poll-keys, deliberately wrong: never halt). */
			if (busy || !halt_for_keys || testfault(TF_POLL_KEYS))
				cpu_relax();
			else
				irq_console_wait();
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
