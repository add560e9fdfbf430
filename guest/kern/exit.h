#ifndef KERN_EXIT_H
#define KERN_EXIT_H

/* Values written to isa-debug-exit (QEMU exits with (value << 1) | 1). */
#define EXIT_DUMP_COMPLETE	0x21	/* status 67 */
#define EXIT_DUMP_FAILED	0x22	/* status 69 */
#define EXIT_NO_DUMP_DEVICE	0x23	/* status 71 */
#define EXIT_BOOT_ERROR		0x24	/* status 73 */

void guest_exit(unsigned value) __attribute__((noreturn));

/* Report a fatal boot error on the result channel and exit with EXIT_BOOT_ERROR.
 * `msg` must be one word (no spaces). */
void fatal_boot_error(const char *msg) __attribute__((noreturn));

void reboot(void) __attribute__((noreturn));

#endif
