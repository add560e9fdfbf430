#ifndef LIB_SERIAL_H
#define LIB_SERIAL_H

#include <stdbool.h>
#include <stddef.h>

#define COM1_BASE 0x3f8

void serial_init(void);
/* Sends one byte; if the transmitter stays busy past a deadline the byte is dropped. */
void serial_putc(char c);
/* Sends n bytes, a FIFO's worth (16) per wait and string write: two port exits per 16 bytes
 * under KVM instead of two a byte. Dropped, as serial_putc's, when the transmitter stays busy. */
void serial_write(const char *s, size_t n);
/* Returns the next received byte, or -1 if none is waiting (never blocks). */
int serial_getc(void);
bool serial_present(void);
/* The receiver's interrupt (IER "data available", on IRQ 4): raised while a byte waits and this
 * is on. Off from serial_init() on; the shell turns it on only to halt until a key comes
 * (kern/irq.h, irq_console_wait). Two port writes, safe in NMI context. */
void serial_rx_interrupt(bool on);

#endif
