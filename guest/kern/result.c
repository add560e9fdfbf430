#include <stdarg.h>
#include <stdbool.h>

#include "kern/result.h"
#include "arch/x86/io.h"
#include "lib/console.h"
#include "lib/printf.h"
#include "lib/string.h"

#define DEBUGCON_PORT 0xe9

/* The line to the result channel; the console's copy too when `echo`. */
static void result_vline(bool echo, const char *fmt, va_list ap)
{
	struct formatted f;	/* the longest line, PROFILE, is about 400 bytes */

	format_line(&f, "DUMPBED ", fmt, ap);
	/* Port writes to debugcon never block; the line in one string write (one exit under KVM:
	 * a line per byte cost the dump's PROGRESS lines ~5 ms each on a nested KVM). */
	outsb(DEBUGCON_PORT, f.buf, f.len);
	if (echo)
		console_write_prepared(f.out, f.lens, f.npieces);
}

void result_line(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	result_vline(true, fmt, ap);
	va_end(ap);
}

void result_line_unechoed(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	result_vline(false, fmt, ap);
	va_end(ap);
}
