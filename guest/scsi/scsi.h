/*
 * The SCSI packet layer, shaped after illumos' scsi_init_pkt(9F) / scsi_setup_cdb(9F) /
 * scsi_poll(9F): what a target driver (scsi/sd.c) uses to talk to any HBA of scsi/hba.h.
 *
 * Packets come from a pool preallocated in .bss: nothing is allocated after a crash. Data is
 * described by a `struct buf` (one buffer or an iovec list, identity-mapped memory); the layer
 * turns it into the packet's scatter/gather list within the HBA's DMA limits, bouncing data the
 * HBA cannot reach through a preallocated low buffer.
 */
#ifndef SCSI_SCSI_H
#define SCSI_SCSI_H

#include <stdbool.h>
#include <stdint.h>

#include "dump/dumpdev.h"	/* struct iovec */
#include "scsi/hba.h"

/* Command opcodes (SPC/SBC), named as illumos names them. */
#define SCMD_TEST_UNIT_READY	0x00
#define SCMD_REQUEST_SENSE	0x03
#define SCMD_INQUIRY		0x12
#define SCMD_MODE_SENSE		0x1a
#define SCMD_START_STOP		0x1b
#define SCMD_READ_CAPACITY	0x25
#define SCMD_READ_G1		0x28	/* READ(10) */
#define SCMD_WRITE_G1		0x2a	/* WRITE(10) */
#define SCMD_SYNCHRONIZE_CACHE	0x35	/* SYNCHRONIZE CACHE(10) */
#define SCMD_READ_G4		0x88	/* READ(16) */
#define SCMD_WRITE_G4		0x8a	/* WRITE(16) */
#define SCMD_SVC_ACTION_IN_G4	0x9e	/* with SSVC_ACTION_READ_CAPACITY_G4: READ CAPACITY(16) */
#define SSVC_ACTION_READ_CAPACITY_G4 0x10

#define CDB_GROUP0		6
#define CDB_GROUP1		10
#define CDB_GROUP4		16

/* Sense keys */
#define KEY_NO_SENSE		0x0
#define KEY_RECOVERABLE_ERROR	0x1
#define KEY_NOT_READY		0x2
#define KEY_MEDIUM_ERROR	0x3
#define KEY_HARDWARE_ERROR	0x4
#define KEY_ILLEGAL_REQUEST	0x5
#define KEY_UNIT_ATTENTION	0x6
#define KEY_DATA_PROTECT	0x7
#define KEY_ABORTED_COMMAND	0xb

/* Additional sense codes we act on */
#define ASC_LUN_NOT_READY	0x04
#define ASCQ_BECOMING_READY	0x01	/* 04/01: in process of becoming ready: wait */
#define ASCQ_INIT_CMD_REQUIRED	0x02	/* 04/02: initializing command required: START UNIT */
#define ASC_MEDIUM_NOT_PRESENT	0x3a

/* struct buf b_flags */
#define B_READ			0x0001	/* device to memory */
#define B_WRITE			0x0002	/* memory to device */

#define BUF_MAX_IOV		4

/* What a packet transfers: one buffer or a few iovecs. b_done says where the next packet of
 * a transfer split over several starts (the caller advances it). */
struct buf {
	uint32_t b_flags;
	struct iovec b_iov[BUF_MAX_IOV];
	int b_iovcnt;
	uint64_t b_bcount;		/* total bytes */
	uint64_t b_done;		/* bytes already transferred */
};

/* One buffer (addr may be NULL when len is 0). */
void bioinit(struct buf *bp, uint32_t flags, void *addr, uint64_t len);
/* Up to BUF_MAX_IOV iovecs; false if there are more. */
bool bioinit_iov(struct buf *bp, uint32_t flags, const struct iovec *iov, int iovcnt);

/* scsi_init_pkt flags */
#define PKT_DMA_PARTIAL		0x0001	/* map what fits in one command; pkt_datalen says how much */

#define SCSI_PKT_POOL		12	/* packets in all */
#define SCSI_PKT_DUMP_RESERVE	4	/* of which runtime (interrupt) I/O may never take these */
/* One bounce buffer, shared: at run time only boot-time reads and the workload use packets
 * with data, and the dump path reclaims it (scsi_pkt_reclaim_all) after the HBA's quiesce. */
#define SCSI_BOUNCE_SIZE	(128u * 1024)

/*
 * A packet for the LUN at `ap`, carrying data from bp (from bp->b_done on; NULL: no data),
 * with a CDB of cmdlen bytes (the CDB itself comes from scsi_setup_cdb or by hand), and
 * pkt_flags (FLAG_NOINTR for polled use; the data direction is taken from bp). The data is
 * mapped within the HBA's limits in multiples of `granule` bytes (the block size; 1 for
 * byte-granular commands). Without PKT_DMA_PARTIAL the whole rest of bp must fit one command.
 * NULL: no packet or bounce buffer free (runtime only), or the data cannot be mapped.
 */
struct scsi_pkt *scsi_init_pkt(struct scsi_address *ap, struct buf *bp, int cmdlen,
			       uint32_t pkt_flags, int dma_flags, uint32_t granule);

/* Give the packet back; for a completed read through the bounce buffer, copy the data out
 * first (illumos does this in scsi_destroy_pkt / scsi_sync_pkt). */
void scsi_destroy_pkt(struct scsi_pkt *pkt);

/*
 * Fill the CDB: for SCMD_READ_G1/SCMD_WRITE_G1 the 10-byte form when the LBA and count fit
 * (LBA < 2^32, count <= 0xFFFF), otherwise READ/WRITE(16). Also SCMD_SYNCHRONIZE_CACHE
 * (count 0 = to the end of the medium) and the 6-byte group-0 commands (addr unused, `count`
 * = allocation length / byte 4). `other` is ORed into byte 1. Sets pkt_cdblen. Returns 1, or
 * 0 if the CDB does not fit the packet's room.
 */
int scsi_setup_cdb(struct scsi_pkt *pkt, uint8_t cmd, uint64_t addr, uint32_t count, uint8_t other);

/*
 * Run the packet to completion, polled (FLAG_NOINTR), interrupts untouched, bounded by a TSC
 * deadline. Retries BUSY/QUEUE FULL and "becoming ready" with backoff and UNIT ATTENTION at
 * once; fetches sense with REQUEST SENSE when the HBA has no autosense; on repeated failure
 * escalates abort -> LUN (else target) reset -> bus reset, then gives up. 0 or EIO; the packet
 * keeps the last reason, status and sense for the caller.
 */
int scsi_poll(struct scsi_pkt *pkt);

/*
 * scsi_poll in two halves, for polled packets in flight (the dump's DUMP_ASYNC writes: several,
 * or one the caller readies the next beside) on an HBA that can (scsi_poll_can_post: tran_poll,
 * max_polled >= 1). scsi_poll_post hands the
 * packet to the HBA and returns at once: 0, ENOTSUP (the HBA cannot) or EBUSY (it did not
 * take it: nothing is in flight; scsi_poll it instead). scsi_poll_wait, once for each posted
 * packet, polls it to completion and, if that attempt failed, goes on as scsi_poll does after
 * a failed attempt (retries, sense, escalation): 0 or EIO, with scsi_poll_last its story. The
 * caller keeps at most hba->max_polled posted and the data unchanged until the wait returns.
 */
bool scsi_poll_can_post(const struct scsi_hba *hba);
int scsi_poll_post(struct scsi_pkt *pkt);
int scsi_poll_wait(struct scsi_pkt *pkt);

/*
 * scsi_poll_post in two steps, on an HBA that can (scsi_poll_can_post_quiet: tran_kick and
 * tran_poll_done too):
 * scsi_poll_post_quiet hands the packet over without a word to the device (FLAG_NOKICK: it
 * only computes on memory, so it may run in ring 3 once interrupts are off for good, with
 * scsi_init_pkt and scsi_setup_cdb before it); scsi_poll_kick then tells the device of every
 * packet so posted. Its answers are scsi_poll_post's; scsi_poll_wait completes the packet.
 */
bool scsi_poll_can_post_quiet(const struct scsi_hba *hba);
int scsi_poll_post_quiet(struct scsi_pkt *pkt);
void scsi_poll_kick(struct scsi_hba *hba);

/*
 * scsi_poll_wait's common case, where ring 0 costs the most and nothing needs the device: a
 * posted packet already back, GOOD. scsi_poll_wait_quiet only computes on memory (the HBA's
 * tran_poll_done): 0, done as scsi_poll_wait would be; EAGAIN, not back yet (nothing changed:
 * scsi_poll_wait it); EINPROGRESS, back but not GOOD: scsi_poll_wait_taken judges what came back
 * and goes on as scsi_poll_wait would (retries, sense, escalation).
 */
int scsi_poll_wait_quiet(struct scsi_pkt *pkt);
int scsi_poll_wait_taken(struct scsi_pkt *pkt);

/* Sense data, fixed or descriptor format. */
struct scsi_sense_info {
	bool valid;
	uint8_t key, asc, ascq;
};
struct scsi_sense_info scsi_pkt_sense(const struct scsi_pkt *pkt);

/* The last scsi_poll's story, for the console and the dump's error reports. */
struct scsi_poll_stat {
	uint32_t attempts;
	uint32_t busy_retries;
	uint32_t not_ready_retries;
	uint32_t unit_attentions;
	uint32_t request_senses;
	uint32_t aborts, lun_resets, target_resets, bus_resets;
	int tran_rc;			/* last tran_start return */
	uint8_t reason, status;		/* last pkt_reason / status byte */
	struct scsi_sense_info sense;
	const char *gave_up;		/* why it failed, NULL on success */
};
extern struct scsi_poll_stat scsi_poll_last;

/* Counters over all scsi_poll calls. */
struct scsi_pkt_stats {
	uint64_t polls, poll_failures, retries, bounced_bytes, partial_maps;
};
extern struct scsi_pkt_stats scsi_pkt_stats;

/*
 * Crash time, after the HBA's tran_quiesce: every packet and bounce buffer the interrupted
 * kernel held is forgotten (it never resumes), so the dump path has the whole pool.
 */
void scsi_pkt_reclaim_all(void);

/* Packets in use, for the console. */
int scsi_pkt_in_use(void);

/* Human-readable names, for messages. */
const char *scsi_reason_name(uint8_t reason);
const char *scsi_key_name(uint8_t key);

/* HBA registry helpers beyond hba.h: probe every HBA driver built in, list what registered. */
void scsi_hba_probe_all(void);
int scsi_hba_count(void);
struct scsi_hba *scsi_hba_get(int i);

/* Big-endian helpers for CDBs and returned data. */
static inline void scsi_put_be16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = (uint8_t)v; }
static inline void scsi_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24; p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void scsi_put_be64(uint8_t *p, uint64_t v)
{
	scsi_put_be32(p, (uint32_t)(v >> 32));
	scsi_put_be32(p + 4, (uint32_t)v);
}
static inline uint32_t scsi_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t scsi_get_be64(const uint8_t *p)
{
	return (uint64_t)scsi_get_be32(p) << 32 | scsi_get_be32(p + 4);
}

#endif
