/*
 * COM1, 115200 8N1, polled. Every wait is bounded: if the transmitter does not drain (host
 * side not reading, or no UART at all), output is dropped instead of hanging the kernel, which
 * matters most in the crash path.
 */
#include "lib/serial.h"
#include "arch/x86/io.h"
#include "arch/x86/tsc.h"
#include "lib/dumpstate.h"

#define REG_DATA	0
#define REG_IER		1
#define REG_FCR		2
#define REG_LCR		3
#define REG_MCR		4
#define REG_LSR		5
#define REG_SCRATCH	7

#define IER_RX_DATA	0x01
#define MCR_OUT2	0x08	/* on a PC, connects the UART's interrupt output to IRQ 4 */

#define LSR_DATA_READY	0x01
#define LSR_THR_EMPTY	0x20

/* One byte takes 87 us at 115200 baud, but a loaded host may not read the other end for a
 * while: wait up to half a second once, then drop bytes until the UART drains again. */
#define TX_TIMEOUT_US	500000
/* With the FIFOs on (serial_init), an empty transmitter (LSR THRE) takes this many bytes. */
#define TX_FIFO_BYTES	16

static bool present;
/* Last byte timed out: do not wait again until the UART recovers. Written by every byte the
 * crash path prints: dump path state (lib/dumpstate.h). */
static bool stalled __dumpstate;

void serial_init(void)
{
	/* The scratch register tells a real 16550 from an empty port (which reads 0xff). */
	outb(COM1_BASE + REG_SCRATCH, 0x5a);
	present = inb(COM1_BASE + REG_SCRATCH) == 0x5a;
	if (!present)
		return;
	outb(COM1_BASE + REG_IER, 0x00);	/* no interrupts */
	outb(COM1_BASE + REG_LCR, 0x80);	/* DLAB */
	outb(COM1_BASE + REG_DATA, 0x01);	/* divisor 1: 115200 */
	outb(COM1_BASE + REG_IER, 0x00);
	outb(COM1_BASE + REG_LCR, 0x03);	/* 8N1 */
	outb(COM1_BASE + REG_FCR, 0xc7);	/* FIFOs on, cleared, 14-byte threshold */
	/* DTR, RTS, OUT2: the line to IRQ 4 is connected, and quiet while IER is 0. */
	outb(COM1_BASE + REG_MCR, 0x03 | MCR_OUT2);
}

bool serial_present(void)
{
	return present;
}

/* Waits, bounded, for the transmitter to be empty; false when it stayed busy (the output is
 * then dropped). */
static bool tx_ready(void)
{
	if (!present)
		return false;
	if (!(inb(COM1_BASE + REG_LSR) & LSR_THR_EMPTY)) {
		uint64_t deadline;

		if (stalled)
			return false;
		deadline = deadline_after_us(TX_TIMEOUT_US);
		while (!(inb(COM1_BASE + REG_LSR) & LSR_THR_EMPTY)) {
			if (deadline_passed(deadline)) {
				stalled = true;
				return false;
			}
			cpu_relax();
		}
	}
	stalled = false;
	return true;
}

void serial_putc(char c)
{
	if (tx_ready())
		outb(COM1_BASE + REG_DATA, (uint8_t)c);
}

void serial_write(const char *s, size_t n)
{
	while (n) {
		size_t k = n < TX_FIFO_BYTES ? n : TX_FIFO_BYTES;

		if (!tx_ready())
			return;
		outsb(COM1_BASE + REG_DATA, s, k);
		s += k;
		n -= k;
	}
}

int serial_getc(void)
{
	if (!present || !(inb(COM1_BASE + REG_LSR) & LSR_DATA_READY))
		return -1;
	return inb(COM1_BASE + REG_DATA);
}

void serial_rx_interrupt(bool on)
{
	if (present)
		outb(COM1_BASE + REG_IER, on ? IER_RX_DATA : 0);
}
