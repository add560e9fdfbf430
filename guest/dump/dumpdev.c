/* Calling a driver's dddump() entry point (see dump/dumpdev.h for the protocol). */
#include "dump/dumpsys.h"
#include "lib/errno.h"
#include "lib/string.h"

/*
 * The devices with a DUMPINIT outstanding: DUMPTERM goes only to those, once (it releases what
 * DUMPINIT pinned; a second one would unpin twice).
 */
#define DEVDUMP_MAX_INIT 4
static struct dumpdev *initialized[DEVDUMP_MAX_INIT];

static int init_slot(const struct dumpdev *dev)
{
	for (int i = 0; i < DEVDUMP_MAX_INIT; i++)
		if (initialized[i] == dev)
			return i;
	return -1;
}

int devdump_init(struct dumpdev *dev, struct dumpio_stat *st)
{
	int slot = init_slot(dev), err;

	if (slot >= 0)
		return 0;	/* already a dump target */
	slot = init_slot(0);
	if (slot < 0) {
		memset(st, 0, sizeof(*st));
		st->error = EBUSY;
		return EBUSY;
	}
	err = dev->dddump(dev, 0, DUMPINIT, st);
	if (!err)
		initialized[slot] = dev;
	return err;
}

int devdump_query(struct dumpdev *dev, struct dmp_query *q)
{
	return dev->dddump(dev, 0, DUMPQUERY, q);
}

int devdump_start(struct dumpdev *dev, struct dumpio_stat *st)
{
	return dev->dddump(dev, 0, DUMPSTART, st);
}

bool dumpdev_partition_ok(const struct dumpdev *dev, uint32_t block_size, uint64_t capacity_blocks)
{
	return dev->block_size == block_size && dev->part_blocks != 0 &&
	       dev->part_lba + dev->part_blocks <= capacity_blocks &&
	       dev->part_bytes == dev->part_blocks * block_size;
}

bool dumpdev_write_ok(const struct dumpdev *dev, const struct uio *uio, uint32_t block_size,
		      uint64_t max_transfer, uint64_t *total)
{
	uint64_t sum = 0, end;

	*total = 0;
	if (!uio || uio->uio_iovcnt < 0 || (uio->uio_iovcnt && !uio->uio_iov))
		return false;
	for (int i = 0; i < uio->uio_iovcnt; i++)
		sum += uio->uio_iov[i].iov_len;
	*total = sum;
	end = uio->uio_offset + sum;
	return sum == uio->uio_resid && uio->uio_offset % block_size == 0 && sum % block_size == 0 &&
	       sum <= max_transfer && end >= uio->uio_offset && end <= dev->part_bytes &&
	       (sum != 0 || (uio->uio_fmode & DUMP_FSYNC));
}

int devdump_write(struct dumpdev *dev, uint64_t offset, struct iovec *iov, int iovcnt, bool fsync,
		  struct dumpio_stat *st)
{
	struct uio uio = {
		.uio_iov = iov,
		.uio_iovcnt = iovcnt,
		.uio_offset = offset,
		.uio_fmode = fsync ? DUMP_FSYNC : 0,
		.uio_resid = 0,
	};
	int err;

	for (int i = 0; i < iovcnt; i++)
		uio.uio_resid += iov[i].iov_len;
	if (uio.uio_resid > dev->part_bytes || offset > dev->part_bytes - uio.uio_resid) {
		memset(st, 0, sizeof(*st));
		st->error = EINVAL;
		st->op = DUMPIO_OP_WRITE;
		st->failing_offset = offset;
		return EINVAL;
	}
	err = dev->dddump(dev, &uio, DUMPWRITE, st);
	if (!err && uio.uio_resid != 0)
		err = EIO;	/* a driver that says yes must have written everything */
	return err;
}

int devdump_end(struct dumpdev *dev, struct dumpio_stat *st)
{
	return dev->dddump(dev, 0, DUMPEND, st);
}

int devdump_term(struct dumpdev *dev)
{
	int slot = init_slot(dev);

	if (slot < 0)
		return 0;	/* no DUMPINIT outstanding: nothing to release */
	initialized[slot] = 0;
	return dev->dddump(dev, 0, DUMPTERM, 0);
}
