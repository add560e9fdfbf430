#ifndef LIB_SERIAL_H
#define LIB_SERIAL_H

#include <stdbool.h>

#define COM1_BASE 0x3f8

void serial_init(void);
/* Sends one byte; if the transmitter stays busy past a deadline the byte is dropped. */
void serial_putc(char c);
/* Returns the next received byte, or -1 if none is waiting (never blocks). */
int serial_getc(void);
bool serial_present(void);

#endif
