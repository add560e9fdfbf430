#ifndef KERN_SHELL_H
#define KERN_SHELL_H

/* The console shell: reads COM1 by polling, forever. */
void shell_run(void) __attribute__((noreturn));

/* `info`: also printed once at boot. */
void shell_print_info(void);

#endif
