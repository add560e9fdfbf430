#include "lib/console.h"
#include "lib/serial.h"

void console_putc(char c)
{
	if (c == '\n')
		serial_putc('\r');
	serial_putc(c);
}

void console_write(const char *s, size_t n)
{
	char buf[32];	/* a FIFO's worth at a time, \n sent as \r\n */
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n')
			buf[k++] = '\r';
		buf[k++] = s[i];
		if (k >= 16) {
			serial_write(buf, k);
			k = 0;
		}
	}
	if (k)
		serial_write(buf, k);
}

int console_getc(void)
{
	return serial_getc();
}
