#include "lib/console.h"
#include "lib/serial.h"

void console_putc(char c)
{
	if (c == '\n')
		serial_putc('\r');
	serial_putc(c);
}

/* The next piece of s[*i..n) the console sends at once: a FIFO's worth (16 bytes, 17 when a
 * \r\n pair ends it: never split), \n sent as \r\n. Returns its length, 0 at the end. */
static size_t next_piece(const char *s, size_t n, size_t *i, char *piece)
{
	size_t k = 0;

	while (*i < n && k < 16) {
		char c = s[(*i)++];

		if (c == '\n')
			piece[k++] = '\r';
		piece[k++] = c;
	}
	return k;
}

void console_write(const char *s, size_t n)
{
	char piece[17];
	size_t i = 0, k;

	while ((k = next_piece(s, n, &i, piece)))
		serial_write(piece, k);
}

size_t console_prepare(const char *s, size_t n, char *out, unsigned char *lens)
{
	size_t i = 0, k, npieces = 0;

	while ((k = next_piece(s, n, &i, out))) {	/* console_write()'s pieces exactly */
		lens[npieces++] = (unsigned char)k;
		out += k;
	}
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
