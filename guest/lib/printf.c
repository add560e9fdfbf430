/* A small vsnprintf; printf() goes to the console. */
#include <stdbool.h>
#include <stdint.h>

#include "arch/x86/usermode.h"
#include "lib/console.h"
#include "lib/dumpstate.h"
#include "lib/printf.h"
#include "lib/string.h"

struct out {
	char *buf;
	size_t size;
	size_t len;	/* would-be length, as C99 snprintf */
};

static void out_char(struct out *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void out_pad(struct out *o, char c, int n)
{
	while (n-- > 0)
		out_char(o, c);
}

static void out_number(struct out *o, uint64_t v, bool negative, unsigned base, bool upper,
		       int width, bool left, bool zero, bool alt)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	const char *prefix = alt && base == 16 ? (upper ? "0X" : "0x") : "";
	char tmp[24];
	int n = 0, len;

	do {
		tmp[n++] = digits[v % base];
		v /= base;
	} while (v);
	len = n + (negative ? 1 : 0) + (int)strlen(prefix);

	if (!left && !zero)
		out_pad(o, ' ', width - len);
	if (negative)
		out_char(o, '-');
	while (*prefix)
		out_char(o, *prefix++);
	if (!left && zero)
		out_pad(o, '0', width - len);
	while (n)
		out_char(o, tmp[--n]);
	if (left)
		out_pad(o, ' ', width - len);
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct out o = { .buf = buf, .size = size, .len = 0 };

	for (; *fmt; fmt++) {
		bool left = false, zero = false, alt = false;
		int width = 0, precision = -1, lmod = 0;
		uint64_t u;
		int64_t s;

		if (*fmt != '%') {
			out_char(&o, *fmt);
			continue;
		}
		fmt++;
		for (;; fmt++) {
			if (*fmt == '-')
				left = true;
			else if (*fmt == '0')
				zero = true;
			else if (*fmt == '#')
				alt = true;
			else
				break;
		}
		if (*fmt == '*') {
			width = va_arg(ap, int);
			if (width < 0) {
				left = true;
				width = -width;
			}
			fmt++;
		}
		while (isdigit(*fmt))
			width = width * 10 + (*fmt++ - '0');
		if (*fmt == '.') {
			fmt++;
			precision = 0;
			if (*fmt == '*') {
				precision = va_arg(ap, int);
				fmt++;
			}
			while (isdigit(*fmt))
				precision = precision * 10 + (*fmt++ - '0');
		}
		/* lmod: -2 hh, -1 h, 0 int, 1 long, 2 long long, 3 size_t */
		if (*fmt == 'h') {
			lmod = -1;
			if (*++fmt == 'h') {
				lmod = -2;
				fmt++;
			}
		} else if (*fmt == 'l') {
			lmod = 1;
			if (*++fmt == 'l') {
				lmod = 2;
				fmt++;
			}
		} else if (*fmt == 'z') {
			lmod = 3;
			fmt++;
		}

		switch (*fmt) {
		case 'd':
		case 'i':
			if (lmod >= 1)
				s = lmod == 2 ? va_arg(ap, long long) : va_arg(ap, long);
			else
				s = va_arg(ap, int);
			if (lmod == -1)
				s = (short)s;
			else if (lmod == -2)
				s = (signed char)s;
			out_number(&o, s < 0 ? -(uint64_t)s : (uint64_t)s, s < 0, 10, false, width, left,
				   zero, false);
			break;
		case 'u':
		case 'x':
		case 'X':
		case 'o':
			if (lmod == 2)
				u = va_arg(ap, unsigned long long);
			else if (lmod == 1 || lmod == 3)
				u = va_arg(ap, unsigned long);
			else
				u = va_arg(ap, unsigned int);
			if (lmod == -1)
				u = (unsigned short)u;
			else if (lmod == -2)
				u = (unsigned char)u;
			out_number(&o, u, false, *fmt == 'u' ? 10 : *fmt == 'o' ? 8 : 16, *fmt == 'X',
				   width, left, zero, alt);
			break;
		case 'p':
			out_number(&o, (uintptr_t)va_arg(ap, void *), false, 16, false, width, left, zero,
				   true);
			break;
		case 'c':
			out_pad(&o, ' ', left ? 0 : width - 1);
			out_char(&o, (char)va_arg(ap, int));
			out_pad(&o, ' ', left ? width - 1 : 0);
			break;
		case 's': {
			const char *str = va_arg(ap, const char *);
			int len;

			if (!str)
				str = "(null)";
			len = (int)strnlen(str, precision < 0 ? (size_t)-1 : (size_t)precision);
			out_pad(&o, ' ', left ? 0 : width - len);
			for (int i = 0; i < len; i++)
				out_char(&o, str[i]);
			out_pad(&o, ' ', left ? width - len : 0);
			break;
		}
		case '%':
			out_char(&o, '%');
			break;
		case '\0':
			fmt--;
			break;
		default:
			out_char(&o, '%');
			out_char(&o, *fmt);
			break;
		}
	}
	if (size)
		buf[o.len < size ? o.len : size - 1] = '\0';
	return (int)o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

/* printf_unprivileged(): printf and result lines format in ring 3 (arch/x86/user_entry.S),
 * where a character costs a few native instructions instead of a few dozen emulated ones, and
 * cut the text into the console's pieces there too: for the boot, and for the dump once the
 * crash handler knows no ring-3 trip was cut short by the crash (see kern/crash.c). */
/* Set by the crash path: dump path state (lib/dumpstate.h). */
static bool format_in_ring3 __dumpstate;

void printf_unprivileged(bool on)
{
	format_in_ring3 = on;
}

struct format_job {
	struct formatted *f;
	const char *prefix;
	const char *fmt;
	va_list ap;
};

/* The prefix, the formatted text, a newline if `prefix` (a result line), then the pieces. */
static void format_now(struct formatted *f, const char *prefix, const char *fmt, va_list ap)
{
	size_t k = prefix ? strlen(prefix) : 0;

	memcpy(f->buf, prefix ? prefix : "", k);
	f->n = vsnprintf(f->buf + k, sizeof(f->buf) - k - 1, fmt, ap);
	f->len = strlen(f->buf);
	if (prefix)
		f->buf[f->len++] = '\n';
	f->npieces = console_prepare(f->buf, f->len, f->out, f->lens);
}

static uint64_t format_here(uint64_t job_addr, uint64_t unused1, uint64_t unused2)
{
	struct format_job *job = (struct format_job *)(uintptr_t)job_addr;

	format_now(job->f, job->prefix, job->fmt, job->ap);
	return 0;
}

void format_line(struct formatted *f, const char *prefix, const char *fmt, va_list ap)
{
	struct format_job job;

	if (!format_in_ring3) {
		format_now(f, prefix, fmt, ap);
		return;
	}
	job.f = f;
	job.prefix = prefix;
	job.fmt = fmt;
	va_copy(job.ap, ap);
	run_unprivileged(format_here, (uintptr_t)&job, 0, 0);
	va_end(job.ap);
}

int vprintf(const char *fmt, va_list ap)
{
	struct formatted f;

	format_line(&f, 0, fmt, ap);
	console_write_prepared(f.out, f.lens, f.npieces);
	return f.n;
}

int printf(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vprintf(fmt, ap);
	va_end(ap);
	return n;
}
