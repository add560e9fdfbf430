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

size_t console_prepare(const char *s, size_t n, char *out, unsigned char *lens)
{
	size_t k = 0, npieces = 0;

	/* console_write()'s pieces exactly: a FIFO's worth, a \r\n pair never split. */
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n')
			out[k++] = '\r';
		out[k++] = s[i];
		if (k >= 16) {
			lens[npieces++] = (unsigned char)k;
			out += k;
			k = 0;
		}
	}
	if (k)
		lens[npieces++] = (unsigned char)k;
	return npieces;
}

void console_write_prepared(const char *out, const unsigned char *lens, size_t npieces)
{
	for (size_t i = 0; i < npieces; i++) {
		serial_write(out, lens[i]);
		out += lens[i];
	}
}

int console_getc(void)
{
	return serial_getc();
}
