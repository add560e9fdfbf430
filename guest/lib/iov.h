/* Scatter/gather lists: struct iovec (the uio's of dump/dumpdev.h) and the loops over them. */
#ifndef LIB_IOV_H
#define LIB_IOV_H

#include <stddef.h>
#include <stdint.h>

struct iovec {
	void *iov_base;
	size_t iov_len;
};

/* The iovecs' total length. */
uint64_t iov_total(const struct iovec *iov, int iovcnt);

/* Copy len bytes from position pos of the iovecs to dst (gather), or from src into the iovecs
 * at position pos (scatter); what lies past their total is left out. Pure (usable in ring 3). */
void iov_gather(void *dst, const struct iovec *iov, int iovcnt, uint64_t pos, uint64_t len);
void iov_scatter(struct iovec *iov, int iovcnt, uint64_t pos, const void *src, uint64_t len);

#endif
