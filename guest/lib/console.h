#ifndef LIB_CONSOLE_H
#define LIB_CONSOLE_H

#include <stddef.h>

/* The human console: COM1, with \n sent as \r\n. */
void console_write(const char *s, size_t n);
void console_putc(char c);
/* Non-blocking: next input byte or -1. */
int console_getc(void);

#endif
