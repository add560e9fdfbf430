#ifndef LIB_PRINTF_H
#define LIB_PRINTF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * Formats: %d %i %u %x %X %o %c %s %p %%, with flags '-' '0' '#', a width (or *), a precision
 * for strings, and the length modifiers hh h l ll z.
 */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
int snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* While on, printf() and format_line() format in ring 3 (run_unprivileged): for the boot,
 * which prints from no interrupt handler and no ring-3 code, and for the dump (kern/crash.c).
 * Off by default. */
void printf_unprivileged(bool on);

#define PRINTF_MAX	512

/* A line formatted once for the console and the result channel. */
struct formatted {
	char buf[PRINTF_MAX];		/* the text, len bytes (NUL-terminated) */
	size_t len;
	int n;				/* what vsnprintf returned */
	char out[2 * PRINTF_MAX];	/* the console's pieces (lib/console.h), back to back */
	unsigned char lens[PRINTF_MAX / 8 + 2];
	size_t npieces;
};

/* `prefix` (NULL: none), then fmt formatted, then (with a prefix) a newline, cut into the
 * console's pieces: in ring 3 while printf_unprivileged is on. Truncated to PRINTF_MAX - 1. */
void format_line(struct formatted *f, const char *prefix, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

/* To the console (COM1). */
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

#endif
