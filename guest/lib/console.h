#ifndef LIB_CONSOLE_H
#define LIB_CONSOLE_H

#include <stddef.h>

/* The human console: COM1, with \n sent as \r\n. */
void console_write(const char *s, size_t n);
/* console_write() in two halves: console_prepare() expands s into out (room for 2 n bytes)
 * and cuts it into the pieces console_write() sends (lens: room for n / 8 + 1), a pure
 * computation (it may run in ring 3); console_write_prepared() sends them. Returns the
 * number of pieces. */
size_t console_prepare(const char *s, size_t n, char *out, unsigned char *lens);
void console_write_prepared(const char *out, const unsigned char *lens, size_t npieces);
void console_putc(char c);
/* Non-blocking: next input byte or -1. */
int console_getc(void);

#endif
