/*
 * `disktest` (test/disk_selftest.h): the dump disk (dumpdev=) driven through its dddump alone,
 * with scatter lists a dddump caller may give and dumpbed's writer never does: iovec boundaries
 * inside a page, at odd addresses and lengths. dumpbed's writer hands a driver page-aligned
 * pieces only (it stages the kernel image's areas and every partial last page), so without this
 * tool a driver's path for the other lists (NVMe's bounce buffer, sd's) never runs; nor NVMe's PRP
 * lists, once its writer's one-buffer writes go as one SGL descriptor (drivers/nvme.c).
 *
 * DUMPQUERY, DUMPSTART, four writes, DUMPEND. Each write carries the pattern of where it lands:
 * byte p of the dump partition is DISKTEST_BYTE(p), so the host reads the image afterwards and
 * knows every byte (tests/integration/test_console_tools.py); each is announced first in a line
 * the host reads ("disktest: write N bytes in K iovecs at partition offset X"). The disk is then
 * as after a dump: its runtime is gone until the next DUMPSTART. Prints `disktest: PASS`, or
 * `disktest: FAIL ...` with the driver's errno.
 */
#include "test/disk_selftest.h"
#include "arch/x86/usermode.h"
#include "dump/dumpdev.h"
#include "dump/dumpsys.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "test/scratch.h"

/* Each 512-byte sector's own seed (the top byte of its number times a 64-bit odd constant),
 * plus 7 times the offset: no period of a power of two, so a stale buffer of the same pattern
 * elsewhere never passes for it. */
#define DISKTEST_BYTE(p)	((uint8_t)((((p) >> 9) * 0x9e3779b97f4a7c15ull >> 56) + (p) * 7))
#define SCRATCH_BYTES		(16u << 20)
#define MIB			(1u << 20)
#define SMALL_WRITE		16384u	/* the first write: three pieces */
#define PAIR_WRITE		(384u << 10)	/* the third: two page-aligned pieces */
#define PAGE_BYTES		4096u

/* The pattern of partition bytes [at, at + n) into dst, in ring 3 (docs/guest.md, "Ring 3"). */
static uint64_t pattern_here(uint64_t dst, uint64_t at, uint64_t n)
{
	uint8_t *p = (uint8_t *)(uintptr_t)dst;

	for (uint64_t i = 0; i < n; i++)
		p[i] = DISKTEST_BYTE(at + i);
	return 0;
}

/* One write of the iovecs' pieces (their lengths in len[]), each taken from its own place in
 * scratch memory (src[]) and filled with the pattern of where it lands. */
static int write_pieces(struct dumpdev *dev, uint64_t at, uint8_t *const src[], const uint64_t len[], int n,
			int fmode)
{
	struct iovec iov[3];
	struct dumpio_stat st;
	uint64_t total = 0;
	int err;

	for (int i = 0; i < n; i++) {
		run_unprivileged(pattern_here, (uintptr_t)src[i], at + total, len[i]);
		iov[i] = (struct iovec){ src[i], len[i] };
		total += len[i];
	}
	printf("disktest: write %llu bytes in %d iovecs at partition offset 0x%llx\n", (unsigned long long)total, n,
	       (unsigned long long)at);
	err = devdump_write(dev, at, iov, n, fmode, &st);
	if (err)
		printf("disktest: FAIL %s (op %d at 0x%llx)\n", errno_name(err), (int)st.op,
		       (unsigned long long)st.failing_offset);
	return err;
}

int disk_selftest_run(void)
{
	struct dumpdev *dev = dump_device;
	uint8_t *mem = test_scratch(SCRATCH_BYTES);
	struct dmp_query q = { 0 };
	struct dumpio_stat st;
	uint64_t big;
	int err;

	if (!dev || !mem) {
		printf("disktest: FAIL %s\n", !dev ? "no dump device (dumpdev=)" : "no 16 MiB of free RAM past the kernel");
		return ENODEV;
	}
	err = devdump_query(dev, &q);
	if (err || q.dumpwrite) {
		printf("disktest: FAIL %s\n", err ? errno_name(err) : "the dump device is a NIC (nictest)");
		return err ? err : ENOTSUP;
	}
	/* The largest write of whole blocks up to 1 MiB + 8 KiB: several of NVMe's 512 KiB bounced commands. */
	big = (q.max_tsize < MIB + 8192 ? q.max_tsize : MIB + 8192) / q.min_tsize * q.min_tsize;
	printf("disktest: %s, blocks of %u bytes, transfers up to %u bytes, scratch at %p\n", dev->name,
	       q.min_tsize, q.max_tsize, mem);
	if (dev->part_bytes < 4 * MIB + q.max_tsize || q.max_tsize < SMALL_WRITE) {
		printf("disktest: FAIL too small: a dump partition of %llu bytes, transfers up to %u\n",
		       (unsigned long long)dev->part_bytes, q.max_tsize);
		return ENOSPC;
	}
	err = devdump_start(dev, &st);
	if (err) {
		printf("disktest: FAIL DUMPSTART: %s\n", errno_name(err));
		return err;
	}
	{
		/* 16 KiB in three pieces of odd lengths from odd addresses: every boundary inside a page. */
		uint8_t *const src[] = { mem + 0x103, mem + MIB + 0x5c4, mem + 2 * MIB + 0x7ff };
		const uint64_t len[] = { 5000, 3000, SMALL_WRITE - 8000 };

		err = write_pieces(dev, 1 * MIB, src, len, 3, 0);
	}
	if (!err) {
		/* About 1 MiB in two pieces, the first ending 1000 bytes into a page (into NVMe's
		 * second bounced command). */
		uint8_t *const src[] = { mem + 3 * MIB, mem + 5 * MIB + 0x40 };
		const uint64_t len[] = { big / 2 + 1000, big - (big / 2 + 1000) };

		err = write_pieces(dev, 2 * MIB, src, len, 2, 0);
	}
	if (!err) {
		/* Up to 384 KiB in two page-aligned pieces: a list PRPs describe (NVMe: a PRP list,
		 * filled in ring 3 past 128 KiB), where one buffer would be one SGL descriptor. */
		uint64_t pair = (q.max_tsize < PAIR_WRITE ? q.max_tsize : PAIR_WRITE) / PAGE_BYTES * PAGE_BYTES;
		uint64_t first = pair / 3 / PAGE_BYTES * PAGE_BYTES;
		uint8_t *const src[] = { mem + 6 * MIB, mem + 7 * MIB };
		const uint64_t len[] = { first, pair - first };

		err = write_pieces(dev, 3 * MIB + (256u << 10), src, len, 2, 0);
	}
	if (!err) {
		/* The largest transfer, page-aligned in one piece (the writer's kind), flushed. */
		uint8_t *const src[] = { mem + 8 * MIB };
		const uint64_t len[] = { q.max_tsize < 4 * MIB ? q.max_tsize : 4 * MIB };

		err = write_pieces(dev, 4 * MIB, src, len, 1, DUMP_FSYNC);
	}
	if (!err) {
		err = devdump_end(dev, &st);
		if (err)
			printf("disktest: FAIL DUMPEND: %s\n", errno_name(err));
	}
	if (dev->print_info)
		dev->print_info(dev->softc);
	if (!err)
		printf("disktest: PASS\n");
	return err;
}
