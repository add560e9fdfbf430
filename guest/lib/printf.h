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

/* While on, printf() formats in ring 3 (run_unprivileged): for the boot, which prints from
 * no interrupt handler and no ring-3 code. Off by default. */
void printf_unprivileged(bool on);

/* To the console (COM1). */
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

#endif
