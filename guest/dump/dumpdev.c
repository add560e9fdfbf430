/* A driver's dddump() entry point, around its dumpdev_ops, and calling one (see dump/dumpdev.h
 * for the protocol). */
#include "dump/dumpsys.h"
#include "lib/dumpstate.h"
#include "lib/errno.h"
#include "lib/string.h"
#include "lib/testfault.h"

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
	sum = iov_total(uio->uio_iov, uio->uio_iovcnt);
	*total = sum;
	end = uio->uio_offset + sum;
	return sum == uio->uio_resid && uio->uio_offset % block_size == 0 && sum % block_size == 0 &&
	       sum <= max_transfer && end >= uio->uio_offset && end <= dev->part_bytes &&
	       (sum != 0 || !(uio->uio_fmode & DUMP_ASYNC)) &&
	       !((uio->uio_fmode & DUMP_ASYNC) && (uio->uio_fmode & DUMP_FSYNC));
}

/*
 * The protocol's state of each device dumpdev_dddump() serves: DUMPINIT done, between DUMPSTART
 * and DUMPEND, writes since the last flush, and the DUMP_ASYNC writes in flight, oldest first
 * from `head`: each one's driver tag and partition offset. The dump path writes it after the
 * crash, so it is dump path state (lib/dumpstate.h), apart from the configured struct dumpdev
 * it belongs to; like all static state it lies in the kernel image, which is always pinned.
 */
#define DUMPDEV_MAX_STATES 4
static struct dumpdev_state {
	const struct dumpdev *dev;
	bool ready, active, unflushed;
	uint32_t head, in_flight;
	struct {
		uint32_t tag;
		uint64_t offset;
	} async[DUMPDEV_MAX_OUTSTANDING];
} states[DUMPDEV_MAX_STATES] __dumpstate;

/* The device's state; a fresh one if it has none and `create`; NULL if none (or no room). */
static struct dumpdev_state *state_of(const struct dumpdev *dev, bool create)
{
	struct dumpdev_state *free = 0;

	for (int i = 0; i < DUMPDEV_MAX_STATES; i++) {
		if (states[i].dev == dev)
			return &states[i];
		if (!states[i].dev && !free)
			free = &states[i];
	}
	if (!create || !free)
		return 0;
	*free = (struct dumpdev_state){ .dev = dev };
	return free;
}

static int failed(const struct dumpdev_ops *ops, void *sc, struct dumpio_stat *st, int err, enum dumpio_op op,
		  uint64_t offset)
{
	if (st) {
		st->error = err;
		st->op = op;
		st->failing_offset = offset;
		st->request_status = 0xff;
		ops->status(sc, &st->device_status, &st->request_status);
	}
	return err;
}

/* ---- several writes in flight (DUMP_ASYNC) ---- */

/* The first DUMP_ASYNC write that failed, found by one DUMPWRITE or DUMPEND: what it reports. */
struct async_failure {
	int error;
	uint64_t offset;
	uint32_t device_status, request_status;	/* the device's words when it was found */
};

static bool has_async(const struct dumpdev_ops *ops)
{
	return ops->outstanding && ops->post && ops->wait;
}

/* DUMPQUERY's max_outstanding: how many dumpdev_dddump() keeps in flight. */
static uint32_t async_limit(const struct dumpdev_ops *ops, void *sc)
{
	uint32_t n = has_async(ops) ? ops->outstanding(sc) : 1;

	return n < 1 ? 1 : n > DUMPDEV_MAX_OUTSTANDING ? DUMPDEV_MAX_OUTSTANDING : n;
}

/* Wait for the oldest write in flight and forget it: 0 or its error, the first one noted. */
static int wait_oldest(const struct dumpdev_ops *ops, void *sc, struct dumpdev_state *state,
		       struct async_failure *fail)
{
	uint32_t i = state->head;
	int err = ops->wait(sc, state->async[i].tag);

	state->head = (i + 1) % DUMPDEV_MAX_OUTSTANDING;
	state->in_flight--;
	if (err && !fail->error) {
		fail->error = err;
		fail->offset = state->async[i].offset;
		fail->request_status = 0xff;
		ops->status(sc, &fail->device_status, &fail->request_status);
	}
	return err;
}

/* Every write in flight, oldest first: 0, or the first failure (noted in *fail). */
static int wait_all(const struct dumpdev_ops *ops, void *sc, struct dumpdev_state *state,
		    struct async_failure *fail)
{
	/* testfault=async-batch (deliberately wrong): nobody waits for the writes in flight; what
	 * follows them goes to the device while they still are (and, where the driver held back
	 * their doorbell, rings it for them). */
	if (testfault(TF_ASYNC_BATCH))
		return fail->error;
	while (state->in_flight)
		wait_oldest(ops, sc, state, fail);
	return fail->error;
}

static int async_failed(struct dumpio_stat *st, const struct async_failure *fail)
{
	if (st) {
		st->error = fail->error;
		st->op = DUMPIO_OP_WRITE;
		st->failing_offset = fail->offset;
		st->device_status = fail->device_status;
		st->request_status = fail->request_status;
	}
	return fail->error;
}

int dumpdev_dddump(const struct dumpdev_ops *ops, struct dumpdev *dev, struct uio *uio, int cmd, void *arg)
{
	void *sc = dev ? dev->softc : 0;
	struct dumpio_stat *st = arg;
	uint64_t offset = uio ? uio->uio_offset : 0, total;
	struct dumpdev_state none = { 0 }, *state;
	struct async_failure fail = { 0 };
	enum dumpio_op op;
	bool fsync;
	int err;

	if (!sc)
		return ENODEV;
	if (cmd != DUMPQUERY && st)
		memset(st, 0, sizeof(*st));
	state = state_of(dev, false);
	if (!state)
		state = &none;	/* no DUMPINIT yet: not ready, not active */

	switch (cmd) {
	case DUMPINIT:
		/* The partition must lie on the disk, in whole blocks of this disk. */
		if (!dumpdev_partition_ok(dev, dev->block_size, dev->disk_blocks))
			return failed(ops, sc, st, EINVAL, DUMPIO_OP_NONE, 0);
		if (state->ready)
			return 0;
		state = state_of(dev, true);
		if (!state)
			return failed(ops, sc, st, EBUSY, DUMPIO_OP_NONE, 0);
		err = ops->init(sc, dev);
		if (err) {
			state->dev = 0;
			return failed(ops, sc, st, err, DUMPIO_OP_NONE, 0);
		}
		state->ready = true;
		return 0;

	case DUMPQUERY: {
		struct dmp_query *q = arg;

		if (!state->ready || !q)
			return EINVAL;
		q->min_tsize = dev->block_size;
		q->max_tsize = ops->max_transfer(sc);
		q->max_outstanding = async_limit(ops, sc);
		return 0;
	}

	case DUMPSTART:
		if (!state->ready)
			return failed(ops, sc, st, EINVAL, DUMPIO_OP_NONE, 0);
		/* Whatever was in flight is the device's reset's to drop: forgotten here. */
		state->head = state->in_flight = 0;
		err = ops->start(sc);
		if (err)
			return failed(ops, sc, st, err, DUMPIO_OP_RESET, 0);
		state->active = true;
		state->unflushed = false;
		return 0;

	case DUMPWRITE:
		if (!state->active)
			return failed(ops, sc, st, EINVAL, DUMPIO_OP_WRITE, offset);
		/* Bounds and alignment before anything reaches the device. */
		if (!dumpdev_write_ok(dev, uio, dev->block_size, ops->max_transfer(sc), &total))
			return failed(ops, sc, st, EINVAL, DUMPIO_OP_WRITE, offset);
		fsync = uio->uio_fmode & DUMP_FSYNC;
		if ((uio->uio_fmode & DUMP_ASYNC) && has_async(ops)) {
			uint32_t tag;

			/* Room for it: with the limit in flight, the oldest completes first. A failure
			 * is reported once the rest have come back; this write is not posted. */
			if (state->in_flight >= async_limit(ops, sc) && wait_oldest(ops, sc, state, &fail)) {
				wait_all(ops, sc, state, &fail);
				return async_failed(st, &fail);
			}
			err = ops->post(sc, dev, uio, total, &tag);
			if (!err) {
				uint32_t i = (state->head + state->in_flight) % DUMPDEV_MAX_OUTSTANDING;

				state->async[i].tag = tag;
				state->async[i].offset = uio->uio_offset;
				state->in_flight++;
				state->unflushed = true;
				uio->uio_resid = 0;
				return 0;
			}
			if (err != ENOTSUP) {
				/* Reported once the rest have come back: an earlier write's failure
				 * first, as the first issued that failed. */
				if (wait_all(ops, sc, state, &fail))
					return async_failed(st, &fail);
				return failed(ops, sc, st, err, DUMPIO_OP_WRITE, offset);
			}
			/* A write the device takes only alone: after the rest, as any other. */
		}
		/* Every other write waits for those in flight: what it says comes after them. */
		if (wait_all(ops, sc, state, &fail))
			return async_failed(st, &fail);
		if (!total && !fsync) {
			uio->uio_resid = 0;
			return 0;	/* only the wait */
		}
		op = total ? DUMPIO_OP_WRITE : DUMPIO_OP_FLUSH;
		err = ops->write(sc, dev, uio, total, fsync, &op, &offset);
		if (err)
			return failed(ops, sc, st, err, op, offset);
		state->unflushed = fsync ? false : state->unflushed || total;
		uio->uio_resid = 0;
		return 0;

	case DUMPEND: {
		int end_err = 0, drain_err;

		if (!state->active)
			return 0;
		state->active = false;
		/* The writes still in flight first: a flush covers only what completed before it. */
		drain_err = wait_all(ops, sc, state, &fail);
		err = drain_err ? drain_err : state->unflushed ? ops->flush(sc) : 0;
		if (!err)
			state->unflushed = false;
		if (ops->end)
			end_err = ops->end(sc, !err);
		if (drain_err)
			return async_failed(st, &fail);
		if (err)
			return failed(ops, sc, st, err, DUMPIO_OP_FLUSH, 0);
		if (end_err)
			return failed(ops, sc, st, end_err, DUMPIO_OP_NONE, 0);
		return 0;
	}

	case DUMPTERM:
		if (state->ready)
			ops->term(sc);
		*state = (struct dumpdev_state){ 0 };
		return 0;

	default:
		return EINVAL;
	}
}

int devdump_write(struct dumpdev *dev, uint64_t offset, struct iovec *iov, int iovcnt, int fmode,
		  struct dumpio_stat *st)
{
	struct uio uio = {
		.uio_iov = iov,
		.uio_iovcnt = iovcnt,
		.uio_offset = offset,
		.uio_fmode = fmode,
		.uio_resid = iov_total(iov, iovcnt),
	};
	int err;

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
