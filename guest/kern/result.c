#include <stdarg.h>

#include "kern/result.h"
#include "arch/x86/io.h"
#include "lib/console.h"
#include "lib/printf.h"
#include "lib/string.h"

#define DEBUGCON_PORT 0xe9

void result_line(const char *fmt, ...)
{
	struct formatted f;	/* the longest line, PROFILE, is about 400 bytes */
	va_list ap;

	va_start(ap, fmt);
	format_line(&f, "DUMPBED ", fmt, ap);
	va_end(ap);

	/* Port writes to debugcon never block; the line in one string write (one exit under KVM:
	 * a line per byte cost the dump's PROGRESS lines ~5 ms each on a nested KVM). */
	outsb(DEBUGCON_PORT, f.buf, f.len);
	console_write_prepared(f.out, f.lens, f.npieces);
}
