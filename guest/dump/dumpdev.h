/*
 * The device dump protocol, shaped after AIX's dddump() entry point:
 *
 *   int dddump(struct dumpdev *dev, struct uio *uio, int cmd, void *arg)
 *
 *   DUMPINIT   at configuration time: check the device and partition, and prepare ("pin")
 *              everything the dump path will use, so it needs no allocation later.
 *              arg: struct dumpio_stat *.
 *   DUMPQUERY  arg: struct dmp_query *: the smallest and largest transfer one DUMPWRITE
 *              accepts. uio is NULL.
 *   DUMPSTART  at crash time: stop whatever the device was doing and make it ready for
 *              DUMPWRITE. arg: struct dumpio_stat *.
 *   DUMPWRITE  write uio (iovecs + a partition-relative byte offset); polled, no interrupts,
 *              bounded. uio_fmode & DUMP_FSYNC asks for a cache flush after the write.
 *              uio_fmode & DUMP_ASYNC (dumpbed's extension, never with DUMP_FSYNC): return
 *              once the device has taken the write, up to DUMPQUERY's max_outstanding in
 *              flight (a device without post and wait writes it at once, as any other); its
 *              memory must not change until it completes. Any other DUMPWRITE,
 *              and DUMPEND, first waits for every write in flight; a zero-byte DUMPWRITE
 *              without DUMP_FSYNC only waits. A failed DUMP_ASYNC write is reported by the
 *              call that finds it (a later DUMPWRITE, DUMPEND): its errno, op WRITE and its
 *              offset in failing_offset, the first issued that failed (every write issued
 *              before it completed). arg: struct dumpio_stat *.
 *   DUMPEND    the dump is over: flush, quiesce. arg: struct dumpio_stat *.
 *   DUMPTERM   the device is no longer the dump device: release what DUMPINIT prepared.
 *   DUMPREAD   network dump devices only (dump/dumpnic.h): the next frame received, into uio,
 *              within arg = the timeout in ms; ETIMEDOUT when none came.
 *
 * Every command returns 0 or an errno (lib/errno.h) and, on error, fills the dumpio_stat.
 */
#ifndef DUMP_DUMPDEV_H
#define DUMP_DUMPDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/iov.h"

enum dump_cmd {
	DUMPINIT = 1,
	DUMPQUERY,
	DUMPSTART,
	DUMPWRITE,
	DUMPEND,
	DUMPTERM,
	DUMPREAD,
};


#define DUMP_FSYNC	0x0010	/* uio_fmode: flush the device's write cache after writing */
#define DUMP_ASYNC	0x0020	/* uio_fmode: return once the device took the write (above) */

struct uio {
	struct iovec *uio_iov;
	int uio_iovcnt;
	uint64_t uio_offset;	/* byte offset from the start of the dump partition */
	int uio_fmode;
	uint64_t uio_resid;	/* bytes still to transfer: the iovecs' total on entry, 0 when done */
};

struct dump_nic;

struct dmp_query {
	uint32_t min_tsize;	/* bytes; every transfer is a multiple of it */
	uint32_t max_tsize;	/* bytes; a multiple of min_tsize (a disk's; a NIC's is 14 + MTU) */
	uint32_t max_outstanding; /* writes the device takes at once (DUMP_ASYNC); >= 1 */
	/* Network dump devices (dump/dumpnic.h): the routine that sends one frame; NULL for a disk. */
	int (*dumpwrite)(struct dump_nic *nic, struct uio *uio);
};

enum dumpio_op {
	DUMPIO_OP_NONE = 0,
	DUMPIO_OP_RESET,
	DUMPIO_OP_WRITE,
	DUMPIO_OP_FLUSH,
};

struct dumpio_stat {
	int error;			/* errno, 0 if none */
	enum dumpio_op op;		/* what failed */
	uint32_t device_status;		/* transport status register (virtio device_status) */
	uint32_t request_status;	/* per-request status (virtio-blk status byte), 0xff if none */
	uint64_t failing_offset;	/* partition byte offset of the failed transfer */
};

struct dumpdev;
typedef int (*dddump_fn)(struct dumpdev *dev, struct uio *uio, int cmd, void *arg);

/*
 * Interrupt-driven runtime I/O of a dump disk, outside the dump: what a system does with the
 * disk before the crash (the test workload drives it; the hold-runtime fault parks it in the
 * device across the crash). Optional: NULL when the driver has none. All in disk blocks.
 *   intr_enable  route the device's interrupt to `vector` and turn it on. 0 or errno.
 *   intr         the vector's handler (interrupt context, IF = 0): completes requests.
 *   intr_mute    at a crash, first thing, IF = 0: stop the device interrupting, at once.
 *                DUMPSTART then forgets whatever was in flight: its `done` is never called.
 *   submit       start a read or a write of nblocks at lba from/to buf (identity-mapped);
 *                done(cookie, ok) runs from intr. 0, EBUSY (no free slot now) or errno;
 *                EINVAL once the disk is dumping or when the range touches the dump partition.
 */
struct dumpdev_runtime_io {
	int (*intr_enable)(void *softc, uint8_t vector);
	void (*intr)(void *softc);
	void (*intr_mute)(void *softc);
	int (*submit)(void *softc, bool write, uint64_t lba, uint32_t nblocks, void *buf,
		      void (*done)(void *cookie, bool ok), void *cookie);
};

/* A configured dump target: a disk driver's instance plus the dump partition on it. */
struct dumpdev {
	char name[32];			/* as given on the command line, e.g. "virtio-blk" */
	dddump_fn dddump;
	void *softc;			/* driver instance */
	uint32_t block_size;		/* logical block size of the disk */
	uint64_t part_lba;		/* first block of the dump partition (logical blocks) */
	uint64_t part_blocks;		/* its length in logical blocks */
	uint64_t part_bytes;		/* part_blocks * block_size */
	void (*print_info)(const void *softc);	/* driver details for the console, optional */
	/* Runtime (polled) reads in disk blocks: 0 or errno. */
	int (*read)(void *softc, uint64_t lba, void *buf, uint32_t nblocks);
	const struct dumpdev_runtime_io *runtime_io;	/* NULL: none */
	uint64_t disk_blocks;		/* the whole disk, in logical blocks */
};

/*
 * A disk driver's dump path: the device work only. dumpdev_dddump() (dump/dumpdev.c) is the
 * dddump entry point around it, once for every driver: the command sequence (DUMPINIT before
 * DUMPQUERY and DUMPSTART, DUMPWRITE only between DUMPSTART and DUMPEND, DUMPTERM undoing
 * DUMPINIT once), the checks of every write (dumpdev_write_ok) and of the partition
 * (dumpdev_partition_ok), a flush at DUMPEND when writes are unflushed, then `end`, and the
 * dumpio_stat of every error. Each returns 0 or an errno.
 *   init          DUMPINIT, the partition checked: what else makes the device unusable as a
 *                 dump target (EROFS; EFAULT: its dump-path state outside the dumpstate), then
 *                 pin what the dump path touches (arch/x86/pin.h). Not called again until term.
 *   term          DUMPTERM: unpin.
 *   max_transfer  DUMPQUERY's max_tsize (a multiple of the block size), after init.
 *   start         DUMPSTART: drop whatever the device was doing (reset, abort: nothing of the
 *                 runtime may complete later) and make it ready for polled writes.
 *   write         `total` bytes of uio's iovecs at partition offset uio->uio_offset, all
 *                 checked; with `fsync`, a flush of the device's write cache after them (total
 *                 is 0 only with fsync: the flush alone). *op: which of the two failed (set to
 *                 DUMPIO_OP_FLUSH before the flush). *failing_offset: the partition offset of
 *                 the transfer that failed, for a driver that knows it better than the write's
 *                 start (which it holds on entry, and keeps if the driver leaves it).
 *   flush         the device's write cache (0 at once when it has none).
 *   outstanding   optional (NULL: 1): DUMPQUERY's max_outstanding, after init; at most
 *                 DUMPDEV_MAX_OUTSTANDING.
 *   post          optional (with outstanding and wait): hand one DUMP_ASYNC write of `total`
 *                 bytes, checked, to the device (its doorbell rung) and return at once: 0 and
 *                 in *tag what names it to `wait`, or an errno (this write's). ENOTSUP: this
 *                 write cannot be in flight with others (nothing was posted); it then goes
 *                 through `write`, after the writes in flight. dumpdev.c never has more than
 *                 `outstanding` in flight, so the driver owns a resource (a request slot, a PRP
 *                 list) for each; a write's is free again once `wait` returned for it.
 *   wait          (with post) poll the write `tag` names to completion: 0 or an errno. The
 *                 device may complete writes in any order: what completes for another tag on
 *                 the way is the driver's to remember for that tag's wait. A write the device
 *                 no longer holds (a reset on the way aborted it) fails at once.
 *                 dumpdev.c keeps the writes in flight, oldest first, with their offsets: when
 *                 `outstanding` are in flight, the oldest is waited for before the next post;
 *                 every other DUMPWRITE, and DUMPEND, waits for them all, oldest first; a
 *                 failure found on the way is reported only once every other write in flight
 *                 has been waited for: the first that failed, its offset and the `status` words
 *                 of the moment it was found. DUMPSTART forgets them (`start` resets the device).
 *   end           optional (NULL: none): DUMPEND of a device that was started, after the
 *                 flush (`flushed`: false when that flush failed): what else ends the dump on
 *                 the device, and leave it quiet.
 *   status        the device's words for a dumpio_stat: its status register, the failed
 *                 request's status (0xff: none).
 */
struct dumpdev_ops {
	int (*init)(void *softc, const struct dumpdev *dev);
	void (*term)(void *softc);
	uint32_t (*max_transfer)(void *softc);
	int (*start)(void *softc);
	int (*write)(void *softc, const struct dumpdev *dev, const struct uio *uio, uint64_t total, bool fsync,
		     enum dumpio_op *op, uint64_t *failing_offset);
	int (*flush)(void *softc);
	uint32_t (*outstanding)(void *softc);
	int (*post)(void *softc, const struct dumpdev *dev, const struct uio *uio, uint64_t total, uint32_t *tag);
	int (*wait)(void *softc, uint32_t tag);
	int (*end)(void *softc, bool flushed);
	void (*status)(void *softc, uint32_t *device_status, uint32_t *request_status);
};

/* The most DUMP_ASYNC writes in flight dumpdev_dddump() keeps track of for one device. */
#define DUMPDEV_MAX_OUTSTANDING	8

/* The dddump entry point of a driver with these ops (its dddump is a call of this). */
int dumpdev_dddump(const struct dumpdev_ops *ops, struct dumpdev *dev, struct uio *uio, int cmd, void *arg);

/*
 * The checks of dumpdev_dddump (dump/dumpdev.c), for a driver that implements dddump itself:
 * dumpdev_partition_ok: DUMPINIT's, the partition lies on a disk of `capacity_blocks` blocks of
 *   `block_size` bytes, in whole blocks of that disk.
 * dumpdev_write_ok: DUMPWRITE's, before anything reaches the device: the uio is well formed, its
 *   iovecs total uio_resid bytes (returned in *total), whole blocks at a block-aligned offset,
 *   at most max_transfer bytes, inside the partition; a zero-byte write never DUMP_ASYNC.
 */
bool dumpdev_partition_ok(const struct dumpdev *dev, uint32_t block_size, uint64_t capacity_blocks);
bool dumpdev_write_ok(const struct dumpdev *dev, const struct uio *uio, uint32_t block_size,
		      uint64_t max_transfer, uint64_t *total);

#endif
