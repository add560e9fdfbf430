/* Scatter/gather lists (lib/iov.h). */
#include <stdbool.h>

#include "lib/iov.h"
#include "lib/string.h"

uint64_t iov_total(const struct iovec *iov, int iovcnt)
{
	uint64_t sum = 0;

	for (int i = 0; i < iovcnt; i++)
		sum += iov[i].iov_len;
	return sum;
}

/* Copy len bytes between a flat buffer and the list from byte pos of it on (to_list: into the list). */
static void iov_copy(struct iovec *iov, int iovcnt, uint64_t pos, uint8_t *flat, uint64_t len, bool to_list)
{
	for (int i = 0; i < iovcnt && len; i++) {
		uint8_t *piece;
		uint64_t n;

		if (pos >= iov[i].iov_len) {
			pos -= iov[i].iov_len;
			continue;
		}
		piece = (uint8_t *)iov[i].iov_base + pos;
		n = iov[i].iov_len - pos < len ? iov[i].iov_len - pos : len;
		memcpy(to_list ? piece : flat, to_list ? flat : piece, n);
		flat += n;
		len -= n;
		pos = 0;
	}
}

void iov_gather(void *dst, const struct iovec *iov, int iovcnt, uint64_t pos, uint64_t len)
{
	iov_copy((struct iovec *)iov, iovcnt, pos, dst, len, false);
}

void iov_scatter(struct iovec *iov, int iovcnt, uint64_t pos, const void *src, uint64_t len)
{
	iov_copy(iov, iovcnt, pos, (uint8_t *)src, len, true);
}
