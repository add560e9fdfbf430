/*
 * SCSI packets: a preallocated pool, DMA mapping within the HBA's limits (with bounce buffers
 * for data the HBA cannot reach), CDB construction, and scsi_poll(), the polled
 * run-to-completion with retries and error recovery that the dump path relies on; on an HBA
 * with tran_poll, scsi_poll_post()/scsi_poll_wait() split it so several are in flight.
 *
 * scsi_poll() never takes an interrupt and never waits without a deadline: each attempt is
 * bounded by pkt_time inside the HBA, backoff delays are TSC busy-waits, and the whole call by
 * SCSI_POLL_BUDGET attempts' worth of pkt_time.
 */
#include "arch/x86/cpu.h"
#include "scsi/scsi.h"
#include "arch/x86/boot.h"
#include "arch/x86/tsc.h"
#include "arch/x86/usermode.h"
#include "lib/errno.h"
#include "lib/dumpstate.h"
#include "lib/printf.h"
#include "lib/string.h"

#define DEFAULT_PKT_TIME_MS	10000
#define SCSI_POLL_BUDGET	4	/* the whole scsi_poll may take this many pkt_times */
#define MAX_UNIT_ATTENTIONS	8	/* in a row, before they count as a failure */
#define MAX_RESET_LOSSES	8	/* commands lost to a reset, before they count as a failure */
#define BACKOFF_FIRST_US	1000
#define BACKOFF_MAX_US		200000
#define REQUEST_SENSE_TIME_MS	2000

struct pkt_slot {
	struct scsi_pkt pkt;		/* first: a packet pointer is a slot pointer */
	bool in_use;
	bool bounce;			/* the data goes through the bounce buffer */
	struct buf *bp;
	uint64_t bp_off;		/* where in bp the mapped data starts */
};

/* The dump path's state (lib/dumpstate.h): every command of the dump takes a packet, maybe the
 * bounce buffer, and updates the statistics. */
static struct pkt_slot pool[SCSI_PKT_POOL] __dumpstate;
static uint8_t bounce_buf[SCSI_BOUNCE_SIZE] __dumpstate __attribute__((aligned(4096)));
static bool bounce_busy __dumpstate;

struct scsi_poll_stat scsi_poll_last __dumpstate;
struct scsi_pkt_stats scsi_pkt_stats __dumpstate;


void bioinit(struct buf *bp, uint32_t flags, void *addr, uint64_t len)
{
	memset(bp, 0, sizeof(*bp));
	bp->b_flags = flags;
	if (len) {
		bp->b_iov[0].iov_base = addr;
		bp->b_iov[0].iov_len = len;
		bp->b_iovcnt = 1;
	}
	bp->b_bcount = len;
}

bool bioinit_iov(struct buf *bp, uint32_t flags, const struct iovec *iov, int iovcnt)
{
	memset(bp, 0, sizeof(*bp));
	bp->b_flags = flags;
	if (iovcnt < 0 || iovcnt > BUF_MAX_IOV)
		return false;
	for (int i = 0; i < iovcnt; i++) {
		if (!iov[i].iov_len)
			continue;
		bp->b_iov[bp->b_iovcnt++] = iov[i];
		bp->b_bcount += iov[i].iov_len;
	}
	return true;
}

/* A pure copy, run in ring 3: on hosts that emulate guest supervisor code instruction by
 * instruction (docs/guest.md, "Ring 3"), a bounce buffer's worth of rep movsb in ring 0 takes
 * a tenth of a second. */
static uint64_t copy_unprivileged(uint64_t dst, uint64_t src, uint64_t len)
{
	memcpy((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, len);
	return 0;
}

/* Copy between bp's data at [off, off+len) and a flat buffer. */
static void buf_copy(struct buf *bp, uint64_t off, uint8_t *flat, uint64_t len, bool to_flat)
{
	for (int i = 0; i < bp->b_iovcnt && len; i++) {
		uint64_t n;
		uint8_t *p;

		if (off >= bp->b_iov[i].iov_len) {
			off -= bp->b_iov[i].iov_len;
			continue;
		}
		p = (uint8_t *)bp->b_iov[i].iov_base + off;
		n = bp->b_iov[i].iov_len - off;
		if (n > len)
			n = len;
		if (to_flat)
			run_unprivileged(copy_unprivileged, (uintptr_t)flat, (uintptr_t)p, n);
		else
			run_unprivileged(copy_unprivileged, (uintptr_t)p, (uintptr_t)flat, n);
		flat += n;
		len -= n;
		off = 0;
	}
}

static bool sgl_add(struct scsi_pkt *pkt, const struct scsi_dma_limits *lim, uint64_t addr,
		    uint32_t len)
{
	struct scsi_sgl *prev = pkt->pkt_sgl_count ? &pkt->pkt_sgl[pkt->pkt_sgl_count - 1] : 0;

	/* Physically contiguous with the previous segment: grow it if the HBA allows. */
	if (prev && prev->addr + prev->len == addr && (uint64_t)prev->len + len <= lim->max_seg_len) {
		prev->len += len;
		return true;
	}
	if ((uint32_t)pkt->pkt_sgl_count >= lim->max_segs)
		return false;
	pkt->pkt_sgl[pkt->pkt_sgl_count++] = (struct scsi_sgl){ addr, len };
	return true;
}

/* Drop bytes from the end of the sgl. */
static void sgl_trim(struct scsi_pkt *pkt, uint32_t excess)
{
	while (excess && pkt->pkt_sgl_count) {
		struct scsi_sgl *last = &pkt->pkt_sgl[pkt->pkt_sgl_count - 1];

		if (last->len > excess) {
			last->len -= excess;
			break;
		}
		excess -= last->len;
		pkt->pkt_sgl_count--;
	}
}

/*
 * Map bp's data from `off` straight into the sgl as far as the limits allow: stops at max_segs,
 * max_xfer, the end of bp, or the first byte beyond dma_addr_max. Returns the bytes mapped,
 * rounded down to the granule; *blocked says a byte the HBA cannot reach stopped it.
 */
static uint32_t map_direct(struct scsi_pkt *pkt, const struct scsi_dma_limits *lim, struct buf *bp,
			   uint64_t off, uint64_t want, uint32_t granule, bool *blocked)
{
	uint64_t total = 0;

	*blocked = false;
	pkt->pkt_sgl_count = 0;
	for (int i = 0; i < bp->b_iovcnt && total < want; i++) {
		uint64_t ioff, left;

		if (off >= bp->b_iov[i].iov_len) {
			off -= bp->b_iov[i].iov_len;
			continue;
		}
		ioff = off;
		off = 0;
		left = bp->b_iov[i].iov_len - ioff;
		while (left && total < want) {
			uint64_t addr = (uintptr_t)bp->b_iov[i].iov_base + ioff;
			uint64_t n = left < want - total ? left : want - total;

			if (n > lim->max_seg_len)
				n = lim->max_seg_len;
			if (addr > lim->dma_addr_max) {
				*blocked = true;
				goto done;
			}
			if (n - 1 > lim->dma_addr_max - addr)
				n = lim->dma_addr_max - addr + 1;
			if (!sgl_add(pkt, lim, addr, (uint32_t)n))
				goto done;
			total += n;
			ioff += n;
			left -= n;
		}
	}
done:
	if (total % granule) {
		sgl_trim(pkt, (uint32_t)(total % granule));
		total -= total % granule;
	}
	return (uint32_t)total;
}

/* Map through a bounce buffer (contiguous, in .bss below 4 GiB). */
static uint32_t map_bounce(struct scsi_pkt *pkt, const struct scsi_dma_limits *lim, uint64_t want,
			   uint32_t granule)
{
	uint64_t addr = (uintptr_t)bounce_buf;
	uint64_t n = want < SCSI_BOUNCE_SIZE ? want : SCSI_BOUNCE_SIZE;
	uint64_t room = (uint64_t)lim->max_segs * lim->max_seg_len;

	if (addr + SCSI_BOUNCE_SIZE - 1 > lim->dma_addr_max)
		return 0;
	if (n > room)
		n = room;
	n -= n % granule;
	pkt->pkt_sgl_count = 0;
	for (uint64_t done = 0; done < n;) {
		uint64_t seg = n - done < lim->max_seg_len ? n - done : lim->max_seg_len;

		sgl_add(pkt, lim, addr + done, (uint32_t)seg);
		done += seg;
	}
	return (uint32_t)n;
}

static struct pkt_slot *slot_of(struct scsi_pkt *pkt)
{
	return (struct pkt_slot *)pkt;
}

struct scsi_pkt *scsi_init_pkt(struct scsi_address *ap, struct buf *bp, int cmdlen,
			       uint32_t pkt_flags, int dma_flags, uint32_t granule)
{
	struct scsi_hba *hba = ap ? ap->a_hba : 0;
	const struct scsi_dma_limits *lim;
	bool polled = pkt_flags & FLAG_NOINTR;
	struct pkt_slot *s = 0;
	struct scsi_pkt *pkt;
	uint64_t flags, want = 0;
	int free_count = 0;

	if (!hba || cmdlen <= 0 || cmdlen > SCSI_MAX_CDB || granule == 0)
		return 0;
	lim = &hba->limits;

	flags = irq_save();
	for (int i = 0; i < SCSI_PKT_POOL; i++)
		if (!pool[i].in_use) {
			free_count++;
			if (!s)
				s = &pool[i];
			if (polled)
				break;	/* only runtime I/O minds the count: the reserve is not its */
		}
	/* Runtime I/O never takes the last few packets: the dump path may need them. */
	if (!s || (!polled && free_count <= SCSI_PKT_DUMP_RESERVE)) {
		irq_restore(flags);
		return 0;
	}
	s->in_use = true;
	irq_restore(flags);

	pkt = &s->pkt;
	/* Field by field, not memset: on hosts that emulate ring 0 string instructions byte by
	 * byte, clearing the whole packet (sgl, sense) costs more than the command. */
	pkt->pkt_sgl_count = 0;
	pkt->pkt_datalen = 0;
	pkt->pkt_reason = CMD_INCOMPLETE;
	pkt->pkt_scbp = 0;
	pkt->pkt_resid = 0;
	pkt->pkt_sense_len = 0;
	pkt->pkt_comp = 0;
	pkt->pkt_private = 0;
	pkt->pkt_ha_private = 0;
	s->bounce = false;
	s->bp = bp;
	s->bp_off = bp ? bp->b_done : 0;
	pkt->pkt_address = *ap;
	pkt->pkt_cdblen = (uint8_t)cmdlen;
	pkt->pkt_flags = pkt_flags & FLAG_NOINTR;
	pkt->pkt_time = DEFAULT_PKT_TIME_MS;

	if (bp && bp->b_done < bp->b_bcount) {
		bool blocked;
		uint32_t mapped;

		pkt->pkt_flags |= (bp->b_flags & B_READ) ? FLAG_DATA_IN : FLAG_DATA_OUT;
		want = bp->b_bcount - bp->b_done;
		if (want > lim->max_xfer)
			want = lim->max_xfer;
		mapped = map_direct(pkt, lim, bp, bp->b_done, want, granule, &blocked);
		if (mapped == 0 && blocked) {
			flags = irq_save();
			if (bounce_busy) {
				irq_restore(flags);
				goto fail;
			}
			bounce_busy = true;
			irq_restore(flags);
			s->bounce = true;
			mapped = map_bounce(pkt, lim, want, granule);
			if (mapped && (bp->b_flags & B_WRITE))
				buf_copy(bp, bp->b_done, bounce_buf, mapped, true);
			scsi_pkt_stats.bounced_bytes += mapped;
		}
		if (mapped == 0)
			goto fail;
		if (mapped < bp->b_bcount - bp->b_done) {
			if (!(dma_flags & PKT_DMA_PARTIAL))
				goto fail;
			scsi_pkt_stats.partial_maps++;
		}
		pkt->pkt_datalen = mapped;
	}
	return pkt;

fail:
	scsi_destroy_pkt(pkt);
	return 0;
}

void scsi_destroy_pkt(struct scsi_pkt *pkt)
{
	struct pkt_slot *s;
	uint64_t flags;

	if (!pkt)
		return;
	s = slot_of(pkt);
	if (s->bounce) {
		/* A read that completed: its data is in the bounce buffer. */
		if (s->bp && (s->bp->b_flags & B_READ) && pkt->pkt_reason == CMD_CMPLT &&
		    pkt->pkt_scbp == STATUS_GOOD)
			buf_copy(s->bp, s->bp_off, bounce_buf, pkt->pkt_datalen, false);
		flags = irq_save();
		bounce_busy = false;
		irq_restore(flags);
		s->bounce = false;
	}
	flags = irq_save();
	s->in_use = false;
	irq_restore(flags);
}

void scsi_pkt_reclaim_all(void)
{
	for (int i = 0; i < SCSI_PKT_POOL; i++) {
		pool[i].in_use = false;
		pool[i].bounce = false;
	}
	bounce_busy = false;
}

int scsi_pkt_in_use(void)
{
	int n = 0;

	for (int i = 0; i < SCSI_PKT_POOL; i++)
		n += pool[i].in_use;
	return n;
}

int scsi_setup_cdb(struct scsi_pkt *pkt, uint8_t cmd, uint64_t addr, uint32_t count, uint8_t other)
{
	uint8_t *cdb = pkt->pkt_cdbp;

	memset(cdb, 0, SCSI_MAX_CDB);
	switch (cmd) {
	case SCMD_READ_G1:
	case SCMD_WRITE_G1:
	case SCMD_READ_G4:
	case SCMD_WRITE_G4:
		if ((cmd == SCMD_READ_G1 || cmd == SCMD_WRITE_G1) && addr <= 0xffffffffull &&
		    count <= 0xffff) {
			cdb[0] = cmd;
			cdb[1] = other;
			scsi_put_be32(cdb + 2, (uint32_t)addr);
			scsi_put_be16(cdb + 7, (uint16_t)count);
			pkt->pkt_cdblen = CDB_GROUP1;
			return 1;
		}
		cdb[0] = (cmd == SCMD_READ_G1 || cmd == SCMD_READ_G4) ? SCMD_READ_G4 : SCMD_WRITE_G4;
		cdb[1] = other;
		scsi_put_be64(cdb + 2, addr);
		scsi_put_be32(cdb + 10, count);
		pkt->pkt_cdblen = CDB_GROUP4;
		return 1;
	case SCMD_SYNCHRONIZE_CACHE:
		if (addr > 0xffffffffull || count > 0xffff)
			return 0;
		cdb[0] = cmd;
		cdb[1] = other;
		scsi_put_be32(cdb + 2, (uint32_t)addr);
		scsi_put_be16(cdb + 7, (uint16_t)count);
		pkt->pkt_cdblen = CDB_GROUP1;
		return 1;
	case SCMD_READ_CAPACITY:
		cdb[0] = cmd;
		pkt->pkt_cdblen = CDB_GROUP1;
		return 1;
	case SCMD_SVC_ACTION_IN_G4:	/* READ CAPACITY(16): count = allocation length */
		cdb[0] = cmd;
		cdb[1] = SSVC_ACTION_READ_CAPACITY_G4;
		scsi_put_be32(cdb + 10, count);
		pkt->pkt_cdblen = CDB_GROUP4;
		return 1;
	case SCMD_TEST_UNIT_READY:
	case SCMD_REQUEST_SENSE:
	case SCMD_INQUIRY:
	case SCMD_MODE_SENSE:
	case SCMD_START_STOP:
		if (count > 0xff)
			return 0;
		cdb[0] = cmd;
		cdb[1] = other;
		cdb[2] = (uint8_t)addr;		/* page code where there is one */
		cdb[4] = (uint8_t)count;
		pkt->pkt_cdblen = CDB_GROUP0;
		return 1;
	default:
		return 0;
	}
}

static struct scsi_sense_info parse_sense(const uint8_t *s, uint32_t len)
{
	struct scsi_sense_info si = { false, 0, 0, 0 };
	uint8_t code;

	if (len < 2)
		return si;
	code = s[0] & 0x7f;
	if ((code == 0x70 || code == 0x71) && len >= 3) {	/* fixed format */
		si.valid = true;
		si.key = s[2] & 0x0f;
		if (len >= 14 && s[7] >= 6) {
			si.asc = s[12];
			si.ascq = s[13];
		}
	} else if ((code == 0x72 || code == 0x73) && len >= 4) {	/* descriptor format */
		si.valid = true;
		si.key = s[1] & 0x0f;
		si.asc = s[2];
		si.ascq = s[3];
	}
	return si;
}

struct scsi_sense_info scsi_pkt_sense(const struct scsi_pkt *pkt)
{
	uint32_t len = pkt->pkt_sense_len < SCSI_SENSE_LEN ? pkt->pkt_sense_len : SCSI_SENSE_LEN;

	return parse_sense(pkt->pkt_sense, len);
}

const char *scsi_reason_name(uint8_t reason)
{
	static const char *const names[] = { "complete", "incomplete", "transport-error", "reset",
					     "aborted", "timeout", "device-gone" };

	return reason < sizeof(names) / sizeof(names[0]) ? names[reason] : "?";
}

const char *scsi_key_name(uint8_t key)
{
	static const char *const names[16] = {
		"no-sense", "recovered-error", "not-ready", "medium-error", "hardware-error",
		"illegal-request", "unit-attention", "data-protect", "blank-check", "vendor",
		"copy-aborted", "aborted-command", "0xc", "volume-overflow", "miscompare", "0xf",
	};

	return names[key & 0xf];
}

/* The target has no autosense for us: ask for the sense data ourselves, at once (the LUN
 * keeps it only until its next command). One attempt, no recursion into scsi_poll. */
static void request_sense(struct scsi_pkt *pkt)
{
	struct scsi_address ap = pkt->pkt_address;
	struct scsi_hba *hba = ap.a_hba;
	struct scsi_pkt *rq;
	struct buf b;

	scsi_poll_last.request_senses++;
	bioinit(&b, B_READ, pkt->pkt_sense, SCSI_SENSE_LEN);
	rq = scsi_init_pkt(&ap, &b, CDB_GROUP0, FLAG_NOINTR, 0, 1);
	if (!rq)
		return;
	scsi_setup_cdb(rq, SCMD_REQUEST_SENSE, 0, SCSI_SENSE_LEN, 0);
	rq->pkt_time = REQUEST_SENSE_TIME_MS;
	if (hba->tran->tran_start(&ap, rq) == TRAN_ACCEPT && rq->pkt_reason == CMD_CMPLT &&
	    rq->pkt_scbp == STATUS_GOOD)
		pkt->pkt_sense_len = rq->pkt_datalen - rq->pkt_resid;
	scsi_destroy_pkt(rq);
}

/* Busy-wait `us`, but not past the deadline. */
static void backoff(uint64_t *us, uint64_t deadline)
{
	uint64_t until = deadline_after_us(*us);

	while (!deadline_passed(until) && !deadline_passed(deadline))
		cpu_relax();
	*us *= 2;
	if (*us > BACKOFF_MAX_US)
		*us = BACKOFF_MAX_US;
}

enum verdict { V_DONE, V_RETRY, V_WAIT, V_FAIL, V_GIVE_UP };

/* What the outcome of one attempt means. */
static enum verdict judge(struct scsi_pkt *pkt, int rc, uint32_t *ua, uint32_t *resets,
			  const char **why)
{
	struct scsi_sense_info si;

	if (rc == TRAN_BUSY) {
		scsi_poll_last.busy_retries++;
		*why = "hba-busy";
		return V_WAIT;
	}
	if (rc == TRAN_BADPKT) {
		*why = "hba-refused-packet";
		return V_GIVE_UP;
	}
	if (rc != TRAN_ACCEPT) {
		*why = "hba-fatal-error";
		return V_FAIL;
	}
	switch (pkt->pkt_reason) {
	case CMD_CMPLT:
		break;
	case CMD_DEV_GONE:
		*why = "device-gone";
		return V_GIVE_UP;
	case CMD_RESET:
		*why = "lost-to-reset";
		return ++*resets <= MAX_RESET_LOSSES ? V_RETRY : V_FAIL;
	default:
		*why = scsi_reason_name(pkt->pkt_reason);
		return V_FAIL;
	}

	switch (pkt->pkt_scbp & 0x3e) {
	case STATUS_GOOD:
		if ((pkt->pkt_flags & FLAG_DATA_OUT) && pkt->pkt_resid) {
			*why = "short-write";
			return V_FAIL;
		}
		return V_DONE;
	case STATUS_BUSY:
	case STATUS_QFULL:
		scsi_poll_last.busy_retries++;
		*why = "target-busy";
		return V_WAIT;
	case STATUS_RESERVATION:
		*why = "reservation-conflict";
		return V_GIVE_UP;
	case STATUS_CHECK:
		break;
	default:
		*why = "bad-status";
		return V_FAIL;
	}

	if (pkt->pkt_sense_len == 0)
		request_sense(pkt);
	si = scsi_pkt_sense(pkt);
	scsi_poll_last.sense = si;
	if (!si.valid) {
		*why = "check-condition-without-sense";
		return V_FAIL;
	}
	switch (si.key) {
	case KEY_RECOVERABLE_ERROR:
		return V_DONE;		/* the command completed, with recovery */
	case KEY_UNIT_ATTENTION:
		/* Power on, reset, parameters changed: the command was not run; run it again. */
		scsi_poll_last.unit_attentions++;
		*why = "unit-attention";
		return ++*ua <= MAX_UNIT_ATTENTIONS ? V_RETRY : V_FAIL;
	case KEY_NOT_READY:
		if (si.asc == ASC_MEDIUM_NOT_PRESENT ||
		    (si.asc == ASC_LUN_NOT_READY && (si.ascq == ASCQ_INIT_CMD_REQUIRED || si.ascq == 0x03))) {
			/* Waiting will not help: it needs START UNIT (the target driver's job) or a
			 * person. */
			*why = "not-ready";
			return V_GIVE_UP;
		}
		scsi_poll_last.not_ready_retries++;
		*why = "becoming-ready";
		return V_WAIT;
	case KEY_MEDIUM_ERROR:
	case KEY_HARDWARE_ERROR:
	case KEY_ABORTED_COMMAND:
	case KEY_NO_SENSE:
		*why = scsi_key_name(si.key);
		return V_FAIL;
	default:	/* illegal request, data protect, ...: the same command fails the same way */
		*why = scsi_key_name(si.key);
		return V_GIVE_UP;
	}
}

/* After the n-th failure: nothing (a plain retry), then abort, LUN/target reset, bus reset. */
static bool escalate(struct scsi_pkt *pkt, uint32_t failures)
{
	const struct scsi_hba_tran *t = pkt->pkt_address.a_hba->tran;
	struct scsi_address *ap = &pkt->pkt_address;

	switch (failures) {
	case 1:
		return true;
	case 2:
		scsi_poll_last.aborts++;
		if (t->tran_abort)
			t->tran_abort(ap, pkt);
		return true;
	case 3:
		if (t->tran_reset) {
			scsi_poll_last.lun_resets++;
			if (!t->tran_reset(ap, RESET_LUN)) {
				scsi_poll_last.target_resets++;
				t->tran_reset(ap, RESET_TARGET);
			}
		}
		return true;
	case 4:
		if (t->tran_reset) {
			scsi_poll_last.bus_resets++;
			t->tran_reset(ap, RESET_ALL);
		}
		return true;
	default:
		return false;
	}
}

/* Before an attempt: no result yet. */
static void clear_results(struct scsi_pkt *pkt)
{
	pkt->pkt_reason = CMD_INCOMPLETE;
	pkt->pkt_scbp = 0xff;
	pkt->pkt_resid = 0;
	pkt->pkt_sense_len = 0;
}

/* What the first attempt of poll_attempts is. */
enum first_attempt {
	FIRST_START,		/* tran_start it (scsi_poll) */
	FIRST_POLL,		/* a FLAG_NOWAIT tran_start accepted it: tran_poll completes it */
	FIRST_TAKEN,		/* posted, and tran_poll_done took its results: judge them */
};

/* A scsi_poll (or scsi_poll_wait) begins: the story of the last one forgotten, the packet's
 * flags those of a run to completion from here on. */
static void poll_begin(struct scsi_pkt *pkt)
{
	memset(&scsi_poll_last, 0, sizeof(scsi_poll_last));
	scsi_pkt_stats.polls++;
	pkt->pkt_flags = (pkt->pkt_flags | FLAG_NOINTR) & ~(FLAG_NOWAIT | FLAG_NOKICK);
}

/* An attempt's outcome, for scsi_poll_last. */
static void poll_note(const struct scsi_pkt *pkt, int rc)
{
	scsi_poll_last.tran_rc = rc;
	scsi_poll_last.reason = pkt->pkt_reason;
	scsi_poll_last.status = pkt->pkt_scbp;
}

/*
 * scsi_poll's attempts and recovery, from the `first` attempt on: judged like any other, then
 * retried and escalated as the verdict says.
 */
static int poll_attempts(struct scsi_pkt *pkt, enum first_attempt first)
{
	struct scsi_address *ap = &pkt->pkt_address;
	const struct scsi_hba_tran *t = ap->a_hba->tran;
	uint32_t time_ms = pkt->pkt_time ? pkt->pkt_time : DEFAULT_PKT_TIME_MS;
	uint64_t deadline = deadline_after_ms((uint64_t)time_ms * SCSI_POLL_BUDGET);
	uint64_t wait_us = BACKOFF_FIRST_US;
	uint32_t failures = 0, ua = 0, resets = 0;
	const char *why = "deadline";

	if (first != FIRST_TAKEN)
		poll_begin(pkt);	/* (scsi_poll_wait_quiet began it) */

	for (;;) {
		enum verdict v;
		uint64_t left_us;
		int rc;

		if (first != FIRST_START) {
			scsi_poll_last.attempts++;
			rc = first == FIRST_POLL ? t->tran_poll(ap, pkt) : TRAN_ACCEPT;
			first = FIRST_START;
		} else {
			if (deadline_passed(deadline))
				break;
			/* An attempt never runs past the whole call's deadline. */
			left_us = tsc_to_us(deadline - rdtsc());
			pkt->pkt_time = left_us / 1000 < time_ms ? (uint32_t)(left_us / 1000) + 1 : time_ms;
			clear_results(pkt);

			if (scsi_poll_last.attempts++)
				scsi_pkt_stats.retries++;
			rc = t->tran_start(ap, pkt);
		}
		poll_note(pkt, rc);
		v = judge(pkt, rc, &ua, &resets, &why);
		if (v == V_DONE) {
			pkt->pkt_time = time_ms;
			return 0;
		}
		if (v == V_GIVE_UP)
			break;
		if (v == V_WAIT) {
			backoff(&wait_us, deadline);
			continue;
		}
		if (v == V_RETRY)
			continue;
		/* V_FAIL */
		ua = 0;
		if (!escalate(pkt, ++failures)) {
			why = "retries-exhausted";
			break;
		}
	}
	pkt->pkt_time = time_ms;
	scsi_poll_last.gave_up = why;
	scsi_pkt_stats.poll_failures++;
	return EIO;
}

static uint64_t post_quiet_here(uint64_t pkt, uint64_t unused1, uint64_t unused2)
{
	(void)unused1;
	(void)unused2;
	return (uint64_t)scsi_poll_post_quiet((struct scsi_pkt *)(uintptr_t)pkt);
}

int scsi_poll(struct scsi_pkt *pkt)
{
	struct scsi_hba *hba = pkt->pkt_address.a_hba;

	/* After the crash, on an HBA that can be told afterwards, the first attempt is handed over
	 * in ring 3 (docs/guest.md, "Ring 3") and waited for as a posted one: scsi_poll in its two
	 * halves. A packet the HBA did not take runs as ever. */
	if (irqs_off_for_good && scsi_poll_can_post_quiet(hba) &&
	    run_unprivileged(post_quiet_here, (uintptr_t)pkt, 0, 0) == 0) {
		scsi_poll_kick(hba);
		return scsi_poll_wait(pkt);
	}
	return poll_attempts(pkt, FIRST_START);
}

bool scsi_poll_can_post(const struct scsi_hba *hba)
{
	return hba->tran->tran_poll && hba->max_polled >= 1;
}

bool scsi_poll_can_post_quiet(const struct scsi_hba *hba)
{
	return scsi_poll_can_post(hba) && hba->tran->tran_kick && hba->tran->tran_poll_done;
}

static int post(struct scsi_pkt *pkt, uint32_t flags)
{
	struct scsi_address *ap = &pkt->pkt_address;
	int rc;

	pkt->pkt_flags |= flags;	/* poll_attempts clears NOWAIT and NOKICK for the retries */
	clear_results(pkt);
	rc = ap->a_hba->tran->tran_start(ap, pkt);
	return rc == TRAN_ACCEPT ? 0 : EBUSY;
}

int scsi_poll_post(struct scsi_pkt *pkt)
{
	if (!scsi_poll_can_post(pkt->pkt_address.a_hba))
		return ENOTSUP;
	return post(pkt, FLAG_NOINTR | FLAG_NOWAIT);
}

int scsi_poll_post_quiet(struct scsi_pkt *pkt)
{
	if (!scsi_poll_can_post_quiet(pkt->pkt_address.a_hba))
		return ENOTSUP;
	return post(pkt, FLAG_NOINTR | FLAG_NOWAIT | FLAG_NOKICK);
}

void scsi_poll_kick(struct scsi_hba *hba)
{
	hba->tran->tran_kick(hba);
}

int scsi_poll_wait(struct scsi_pkt *pkt)
{
	return poll_attempts(pkt, FIRST_POLL);
}

int scsi_poll_wait_quiet(struct scsi_pkt *pkt)
{
	const struct scsi_hba_tran *t = pkt->pkt_address.a_hba->tran;

	if (!scsi_poll_can_post_quiet(pkt->pkt_address.a_hba) || !t->tran_poll_done(&pkt->pkt_address, pkt))
		return EAGAIN;
	poll_begin(pkt);
	/* judge()'s V_DONE without its sense branch (REQUEST SENSE is I/O) */
	if (pkt->pkt_reason != CMD_CMPLT || (pkt->pkt_scbp & 0x3e) != STATUS_GOOD ||
	    ((pkt->pkt_flags & FLAG_DATA_OUT) && pkt->pkt_resid))
		return EINPROGRESS;	/* scsi_poll_wait_taken judges it */
	scsi_poll_last.attempts = 1;
	poll_note(pkt, TRAN_ACCEPT);
	return 0;
}

int scsi_poll_wait_taken(struct scsi_pkt *pkt)
{
	return poll_attempts(pkt, FIRST_TAKEN);
}
