#ifndef KERN_RESULT_H
#define KERN_RESULT_H

/*
 * The machine-readable result channel: isa-debugcon on port 0xE9. Each call emits one
 * "DUMPBED <fmt>\n" line there, and echoes it to the console for people watching.
 */
void result_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
