/*
 * The LSI 53C895A console self-test (`lsi-selftest [N [T]]`, test/lsi_selftest.h): a test
 * fixture, apart from the driver. It drives the HBA through its scsi_hba_tran only (commands
 * through tran_start, polled; tran_reset; tran_print_info) and reads two of the driver's
 * counters (lsi53c895a_get_stats) to see that a phase mismatch was taken and that a BUS DEVICE
 * RESET did not reset the bus.
 */
#include "test/lsi_selftest.h"
#include "arch/x86/cpu.h"
#include "arch/x86/tsc.h"
#include "arch/x86/usermode.h"
#include "drivers/lsi53c895a.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "scsi/scsi.h"
#include "test/scratch.h"

#define ST_OFFSET		(512u * 1024)	/* between the GPT and the first (1 MiB aligned) partition */
#define ST_RW_BYTES		(256u * 1024)
#define ST_READ_BYTES		(2u << 20)
#define ST_SCRATCH_BYTES	(8u << 20)

static struct scsi_pkt st_pkt;
static int st_failures;

static const char *scsi_reason_str(uint8_t reason)
{
	static const char *const names[] = { "complete", "incomplete", "transport-error", "reset",
					     "aborted", "timeout", "device-gone" };

	return reason < sizeof(names) / sizeof(names[0]) ? names[reason] : "tran_start-refused";
}

/* The byte loops over MiBs run in ring 3 (docs/guest.md, "Ring 3"): in emulated ring 0 one
 * compare of 2 MiB took 11 s. */
static uint64_t differ_here(uint64_t a, uint64_t b, uint64_t n)
{
	return memcmp((const void *)(uintptr_t)a, (const void *)(uintptr_t)b, n) != 0;
}

static bool st_same(const void *a, const void *b, uint32_t n)
{
	return run_unprivileged(differ_here, (uintptr_t)a, (uintptr_t)b, n) == 0;
}

static uint64_t pattern_here(uint64_t buf, uint64_t n, uint64_t unused)
{
	uint8_t *p = (uint8_t *)(uintptr_t)buf;

	(void)unused;
	for (uint64_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 7 + (i >> 9) + 0x5a);
	return 0;
}

static void st_check(bool ok, const char *what)
{
	if (!ok)
		st_failures++;
	printf("  %-4s %s\n", ok ? "ok" : "FAIL", what);
}

/* One command through tran_start, polled. The data is cut into `nseg` pieces of unequal,
 * deliberately odd sizes, or with nseg < 0 into -nseg equal pieces. */
static struct scsi_pkt *st_cmd(struct scsi_hba *hba, int target, const uint8_t *cdb, int cdblen,
			       uint32_t dir, void *buf, uint32_t len, int nseg, uint32_t time_ms)
{
	struct scsi_pkt *pkt = &st_pkt;
	uint32_t done = 0;
	int rc;

	memset(pkt, 0, sizeof(*pkt));
	pkt->pkt_address.a_hba = hba;
	pkt->pkt_address.a_target = (uint16_t)target;
	pkt->pkt_address.a_lun = 0;
	memcpy(pkt->pkt_cdbp, cdb, cdblen);
	pkt->pkt_cdblen = (uint8_t)cdblen;
	pkt->pkt_flags = FLAG_NOINTR | (len ? dir : 0);
	pkt->pkt_time = time_ms;
	bool equal = nseg < 0;

	if (equal)
		nseg = -nseg;
	if (nseg < 1)
		nseg = 1;
	for (int i = 0; i < nseg && done < len; i++) {
		uint32_t piece = (i == nseg - 1) ? len - done :
				 len / (uint32_t)nseg + (equal ? 0 : 4u * (uint32_t)i + 1u);

		if (piece > len - done)
			piece = len - done;
		pkt->pkt_sgl[i].addr = (uintptr_t)buf + done;
		pkt->pkt_sgl[i].len = piece;
		pkt->pkt_sgl_count = i + 1;
		done += piece;
	}
	pkt->pkt_datalen = len;
	rc = hba->tran->tran_start(&pkt->pkt_address, pkt);
	if (rc != TRAN_ACCEPT) {
		printf("  tran_start: %d\n", rc);
		pkt->pkt_reason = 0xff;
	}
	return pkt;
}

static bool st_good(const struct scsi_pkt *pkt)
{
	return pkt->pkt_reason == CMD_CMPLT && pkt->pkt_scbp == STATUS_GOOD;
}

/* A check on a command's outcome: on failure, say how the command ended. */
static void st_check_pkt(const struct scsi_pkt *pkt, bool ok, const char *what)
{
	char buf[200];

	if (ok || st_good(pkt)) {
		st_check(ok, what);
		return;
	}
	snprintf(buf, sizeof(buf), "%s [%s, status 0x%02x, resid %u]", what,
		 scsi_reason_str(pkt->pkt_reason), pkt->pkt_scbp, pkt->pkt_resid);
	st_check(false, buf);
}

static void st_sense(struct scsi_hba *hba, int target, uint8_t *key, uint8_t *asc)
{
	static uint8_t sense[18];
	uint8_t cdb[6] = { 0x03, 0, 0, 0, sizeof(sense), 0 };
	struct scsi_pkt *pkt = st_cmd(hba, target, cdb, 6, FLAG_DATA_IN, sense, sizeof(sense), 1, 2000);

	*key = st_good(pkt) ? sense[2] & 0xf : 0xff;
	*asc = st_good(pkt) ? sense[12] : 0xff;
}

/* TEST UNIT READY until GOOD, through unit attentions. */
static bool st_ready(struct scsi_hba *hba, int target, int *unit_attentions)
{
	uint8_t cdb[6] = { 0 }, key, asc;

	for (int i = 0; i < 6; i++) {
		struct scsi_pkt *pkt = st_cmd(hba, target, cdb, 6, 0, 0, 0, 0, 2000);

		if (st_good(pkt))
			return true;
		if (pkt->pkt_reason != CMD_CMPLT || pkt->pkt_scbp != STATUS_CHECK)
			return false;
		st_sense(hba, target, &key, &asc);
		if (key == 6 && unit_attentions)
			(*unit_attentions)++;
	}
	return false;
}

static void st_rw10(uint8_t *cdb, uint8_t op, uint32_t lba, uint16_t blocks)
{
	memset(cdb, 0, 10);
	cdb[0] = op;
	cdb[2] = lba >> 24;
	cdb[3] = (uint8_t)(lba >> 16);
	cdb[4] = (uint8_t)(lba >> 8);
	cdb[5] = (uint8_t)lba;
	cdb[7] = blocks >> 8;
	cdb[8] = (uint8_t)blocks;
}

int lsi_selftest_run(int index, int target)
{
	int count = lsi53c895a_count();
	struct scsi_hba *hba = index >= 0 && index < count ? scsi_hba_find(LSI_TRAN_NAME, index) : 0;
	static uint8_t inq[96], cap[8];
	uint8_t cdb[16], *mem = test_scratch(ST_SCRATCH_BYTES), *a, *b, *save;
	struct scsi_pkt *pkt;
	uint32_t bs, lba, nblk;
	uint64_t t0, resets;
	int ua = 0;
	char msg[160];

	if (!hba) {
		printf("lsi-selftest: no LSI HBA %d (%d registered)\n", index, count);
		return ENODEV;
	}
	if (!mem) {
		printf("lsi-selftest: no %u MiB of free RAM below 4 GiB past the kernel\n",
		       ST_SCRATCH_BYTES >> 20);
		return ENOSPC;
	}
	a = mem;
	b = mem + ST_READ_BYTES;
	save = mem + 2 * ST_READ_BYTES;
	st_failures = 0;
	printf("lsi-selftest: %s target %d lun 0, scratch at %p\n", hba->name, target, mem);

	/* Who is there: a selection timeout is CMD_INCOMPLETE. */
	printf("  targets:");
	for (int t = 0; t < hba->max_target; t++) {
		memset(cdb, 0, 6);
		pkt = st_cmd(hba, t, cdb, 6, 0, 0, 0, 0, 2000);
		printf(" %d:%s", t, pkt->pkt_reason == CMD_INCOMPLETE ? "-" :
				     pkt->pkt_reason == CMD_CMPLT ? "disk" : scsi_reason_str(pkt->pkt_reason));
	}
	printf("\n");

	st_check(st_ready(hba, target, &ua), "TEST UNIT READY (through unit attentions)");

	memset(cdb, 0, 6);
	cdb[0] = 0x12;
	cdb[4] = sizeof(inq);
	memset(inq, 0, sizeof(inq));
	pkt = st_cmd(hba, target, cdb, 6, FLAG_DATA_IN, inq, sizeof(inq), 3, 2000);
	snprintf(msg, sizeof(msg), "INQUIRY: type %u '%.8s' '%.16s' '%.4s', %u bytes, resid %u",
		 inq[0] & 0x1f, (char *)inq + 8, (char *)inq + 16, (char *)inq + 32,
		 (unsigned)inq[4] + 5, pkt->pkt_resid);
	st_check_pkt(pkt, st_good(pkt) && pkt->pkt_resid == sizeof(inq) - ((unsigned)inq[4] + 5), msg);

	memset(cdb, 0, 10);
	cdb[0] = 0x25;
	pkt = st_cmd(hba, target, cdb, 10, FLAG_DATA_IN, cap, sizeof(cap), 1, 2000);
	lba = (uint32_t)cap[0] << 24 | (uint32_t)cap[1] << 16 | (uint32_t)cap[2] << 8 | cap[3];
	bs = (uint32_t)cap[4] << 24 | (uint32_t)cap[5] << 16 | (uint32_t)cap[6] << 8 | cap[7];
	snprintf(msg, sizeof(msg), "READ CAPACITY(10): %u blocks of %u bytes", lba + 1, bs);
	st_check_pkt(pkt, st_good(pkt) && (bs == 512 || bs == 4096), msg);
	if (!st_good(pkt) || (bs != 512 && bs != 4096) ||
	    (uint64_t)(lba + 1) * bs < ST_OFFSET + ST_RW_BYTES + (1u << 20)) {
		printf("lsi-selftest: no usable disk, stopping\n");
		return EIO;
	}

	/* Reads: 2 MiB from LBA 0 as 8 odd pieces and as one; the target disconnects, reselects,
	 * and QEMU feeds it in 128 KiB pieces. */
	nblk = ST_READ_BYTES / bs;
	st_rw10(cdb, 0x28, 0, (uint16_t)nblk);
	t0 = rdtsc();
	pkt = st_cmd(hba, target, cdb, 10, FLAG_DATA_IN, a, ST_READ_BYTES, 8, 5000);
	snprintf(msg, sizeof(msg), "READ(10) 2 MiB in 8 pieces, %llu us",
		 (unsigned long long)tsc_to_us(rdtsc() - t0));
	st_check_pkt(pkt, st_good(pkt) && pkt->pkt_resid == 0 && memcmp(a + bs, "EFI PART", 8) == 0,
		     msg);
	pkt = st_cmd(hba, target, cdb, 10, FLAG_DATA_IN, b, ST_READ_BYTES, 1, 5000);
	st_check_pkt(pkt, st_good(pkt) && st_same(a, b, ST_READ_BYTES),
		     "READ(10) 2 MiB in 1 piece, same data");

	/* Short transfers: the target has one block, we offer two. */
	st_rw10(cdb, 0x28, 1, 1);
	pkt = st_cmd(hba, target, cdb, 10, FLAG_DATA_IN, b, 2 * bs, 1, 2000);
	snprintf(msg, sizeof(msg), "short READ in one move (mid-move mismatch): resid %u", pkt->pkt_resid);
	st_check_pkt(pkt, st_good(pkt) && pkt->pkt_resid == bs && memcmp(b, "EFI PART", 8) == 0, msg);
	pkt = st_cmd(hba, target, cdb, 10, FLAG_DATA_IN, b, 3 * bs, 3, 2000);
	snprintf(msg, sizeof(msg), "short READ, three odd moves (mismatch in the first): resid %u",
		 pkt->pkt_resid);
	st_check_pkt(pkt, st_good(pkt) && pkt->pkt_resid == 2 * bs, msg);
	resets = lsi53c895a_get_stats(hba).mismatches;
	pkt = st_cmd(hba, target, cdb, 10, FLAG_DATA_IN, b, 3 * bs, -3, 2000);
	snprintf(msg, sizeof(msg), "short READ, three block moves (mismatch at the 2nd's start): resid %u",
		 pkt->pkt_resid);
	st_check_pkt(pkt, st_good(pkt) && pkt->pkt_resid == 2 * bs &&
			       lsi53c895a_get_stats(hba).mismatches == resets + 1, msg);

	/* Non-destructive round trip outside any partition. */
	lba = ST_OFFSET / bs;
	nblk = ST_RW_BYTES / bs;
	st_rw10(cdb, 0x28, lba, (uint16_t)nblk);
	pkt = st_cmd(hba, target, cdb, 10, FLAG_DATA_IN, save, ST_RW_BYTES, 2, 5000);
	st_check_pkt(pkt, st_good(pkt), "READ(10) 256 KiB at 512 KiB (saved)");
	if (st_good(pkt)) {
		run_unprivileged(pattern_here, (uintptr_t)a, ST_RW_BYTES, 0);
		st_rw10(cdb, 0x2a, lba, (uint16_t)nblk);
		pkt = st_cmd(hba, target, cdb, 10, FLAG_DATA_OUT, a, ST_RW_BYTES, 3, 5000);
		st_check_pkt(pkt, st_good(pkt) && pkt->pkt_resid == 0, "WRITE(10) 256 KiB pattern in 3 pieces");
		memset(b, 0, ST_RW_BYTES);
		st_rw10(cdb, 0x28, lba, (uint16_t)nblk);
		pkt = st_cmd(hba, target, cdb, 10, FLAG_DATA_IN, b, ST_RW_BYTES, 5, 5000);
		st_check_pkt(pkt, st_good(pkt) && st_same(a, b, ST_RW_BYTES),
			     "READ(10) 256 KiB in 5 pieces, pattern back");
		memset(cdb, 0, 10);
		cdb[0] = 0x35;
		pkt = st_cmd(hba, target, cdb, 10, 0, 0, 0, 0, 5000);
		st_check_pkt(pkt, st_good(pkt), "SYNCHRONIZE CACHE(10) (no data, completes later)");
		st_rw10(cdb, 0x2a, lba, (uint16_t)nblk);
		pkt = st_cmd(hba, target, cdb, 10, FLAG_DATA_OUT, save, ST_RW_BYTES, 1, 5000);
		st_rw10(cdb, 0x28, lba, (uint16_t)nblk);
		pkt = st_cmd(hba, target, cdb, 10, FLAG_DATA_IN, b, ST_RW_BYTES, 1, 5000);
		st_check_pkt(pkt, st_good(pkt) && st_same(save, b, ST_RW_BYTES), "original data restored");
	}

	/* Resets: BUS DEVICE RESET, then the whole bus (the target reports UNIT ATTENTION). */
	pkt = &st_pkt;
	pkt->pkt_address.a_hba = hba;
	pkt->pkt_address.a_target = (uint16_t)target;
	pkt->pkt_address.a_lun = 0;
	resets = lsi53c895a_get_stats(hba).bus_resets;
	st_check(hba->tran->tran_reset(&pkt->pkt_address, RESET_TARGET) == 1 &&
			 lsi53c895a_get_stats(hba).bus_resets == resets,
		 "BUS DEVICE RESET message taken");
	st_check(st_ready(hba, target, 0), "TEST UNIT READY after it");
	st_check(hba->tran->tran_reset(&pkt->pkt_address, RESET_ALL) == 1, "SCSI bus reset");
	ua = 0;
	st_check(st_ready(hba, target, &ua) && ua > 0, "TEST UNIT READY after it (unit attention seen)");

	/* A command that cannot finish in time: abort, bus reset, and the next one works. */
	st_rw10(cdb, 0x28, 0, (uint16_t)(ST_SCRATCH_BYTES / bs));
	pkt = st_cmd(hba, target, cdb, 10, FLAG_DATA_IN, mem, ST_SCRATCH_BYTES, 4, 1);
	snprintf(msg, sizeof(msg), "READ(10) 8 MiB with pkt_time 1 ms: %s",
		 scsi_reason_str(pkt->pkt_reason));
	st_check(pkt->pkt_reason == CMD_TIMEOUT || st_good(pkt), msg);
	st_check(st_ready(hba, target, 0), "TEST UNIT READY after it");
	st_rw10(cdb, 0x28, 1, 1);
	pkt = st_cmd(hba, target, cdb, 10, FLAG_DATA_IN, b, bs, 1, 2000);
	st_check_pkt(pkt, st_good(pkt) && memcmp(b, "EFI PART", 8) == 0, "READ(10) after it");

	hba->tran->tran_print_info(hba);
	printf("lsi-selftest: %s (%d failure%s)\n", st_failures ? "FAILED" : "passed", st_failures,
	       st_failures == 1 ? "" : "s");
	return st_failures ? EIO : 0;
}
