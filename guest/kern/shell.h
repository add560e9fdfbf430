#ifndef KERN_SHELL_H
#define KERN_SHELL_H

#include <stdbool.h>

/* The console shell: reads COM1 forever, halted between keys (kern/irq.h). */
void shell_run(void) __attribute__((noreturn));

/* `info`: also printed once at boot. */
void shell_print_info(void);

/*
 * Hooks for what runs beside the shell (the test workload, test/workload.c), so the shell names
 * none of it. The idle hook is called while the shell waits for a key; while it returns true,
 * the wait runs with IF = 1 (interrupt-driven runtime I/O is taken there and only there:
 * commands run with IF = 0). The info hook adds lines to `info`. One of each; NULL removes it.
 */
void shell_set_idle_hook(bool (*idle)(void));
void shell_set_info_hook(void (*print)(void));

/*
 * Console commands. Each is declared where it is implemented, with
 * SHELL_COMMAND(order, name, help, fn): an entry in the linker set
 * [__shell_commands_start, __shell_commands_end) (linker.ld), so the shell names no command
 * but its own (kern/shell.c: help, info, dump, dumpctl, estimate, reboot; the test fixtures'
 * commands are in test/shell_cmds.c). `fn` gets the arguments: the rest of the line after the
 * name, leading and trailing blanks removed ("" without any).
 *
 * `order` places the command in `help`'s list: three digits, each number used once, sorted as
 * text in the section's name (linker.ld: SORT_BY_NAME). Taken:
 * 010 help, 020 info, 030 dump, 040 dumpctl, 050 estimate, 060 selftest, 070 panic, 080 nmi,
 * 090 divide-error, 100 invalid-opcode, 110 general-protection, 120 page-fault,
 * 130 double-fault, 140 hang, 150 stop-disk, 160 workload, 170 lsi-selftest, 175 disktest,
 * 180 nictest, 190 nicpair, 900 reboot.
 */
struct shell_command {
	const char *name;
	const char *help;
	void (*run)(const char *args);
};
#define SHELL_COMMAND(cmd_order, cmd_name, cmd_help, cmd_fn)					\
	static const struct shell_command shell_command_##cmd_fn				\
	__attribute__((used, section(".rodata.shell_commands." #cmd_order), aligned(8))) =	\
		{ cmd_name, cmd_help, cmd_fn }

#endif
