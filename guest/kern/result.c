#include <stdarg.h>

#include "kern/result.h"
#include "arch/x86/io.h"
#include "lib/console.h"
#include "lib/printf.h"
#include "lib/string.h"

#define DEBUGCON_PORT 0xe9

void result_line(const char *fmt, ...)
{
	char line[512];	/* the longest line, PROFILE, is about 400 bytes */
	va_list ap;
	size_t n;

	memcpy(line, "DUMPBED ", 8);
	va_start(ap, fmt);
	vsnprintf(line + 8, sizeof(line) - 9, fmt, ap);
	va_end(ap);
	n = strlen(line);
	line[n++] = '\n';

	/* Port writes to debugcon never block; the line in one string write (one exit under KVM:
	 * a line per byte cost the dump's PROGRESS lines ~5 ms each on a nested KVM). */
	outsb(DEBUGCON_PORT, line, n);
	console_write(line, n);
}
