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

	/* Port writes to debugcon never block. */
	for (size_t i = 0; i < n; i++)
		outb(DEBUGCON_PORT, (uint8_t)line[i]);
	console_write(line, n);
}
