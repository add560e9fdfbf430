#ifndef KERN_RESULT_H
#define KERN_RESULT_H

/*
 * The machine-readable result channel: isa-debugcon on port 0xE9. Each call emits one
 * "DUMPBED <fmt>\n" line there, and echoes it to the console for people watching.
 */
void result_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same line on the result channel only: for the dump's lines people need in another form
 * or not at all (PROGRESS, PROFILE). The console's UART takes a byte per port exit, about
 * 24 us on kvm-pvm: a PROGRESS line's echo cost 2.4 ms, PROFILE's 10. */
void result_line_unechoed(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
