/*
 * Deliberate bugs, one word per class of driver, writer or shell bug (`testfault=WORD[,WORD...]`,
 * docs/guest-interface.md). Each makes the guest wrong in exactly one way the host's oracles
 * must catch; the tests run the guest with each and show the oracle failing. Nothing here is
 * ever on without the command-line word.
 *
 * The table (lib/testfault.c) is the one place a word is defined; code asks testfault(TF_X).
 */
#ifndef LIB_TESTFAULT_H
#define LIB_TESTFAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum testfault_bit {
	TF_IRQ_ON,		/* the dump runs with IF = 1, queues ask for interrupts */
	TF_NO_FLUSH,		/* DUMP_FSYNC ignored: the device never sees a flush */
	TF_EARLY_FLUSH,		/* virtio-blk: the flush goes out before the write it follows completed */
	TF_NO_WAIT,		/* virtio-blk: a DUMPWRITE with a flush returns without waiting for them; virtio-scsi: tran_poll reports a command done at once */
	TF_LEADER_FIRST,	/* writer: the COMPLETE leader before the end marker and the trailer */
	TF_IN_PLACE,		/* writer: checkpoints rewrite the slot the leader on disk names */
	TF_MASK_ONLY,		/* DUMPSTART masks interrupts but neither resets nor aborts anything */
	TF_STAGE_STUCK,		/* writer: a staged copy never advances its source */
	TF_SKIP_LOW,		/* the RAM component leaves out the RAM below 1 MiB */
	TF_FPU_CLOBBER,		/* the crash record's FXSAVE image is zeroed after it was saved */
	TF_WRONG_REPORT,	/* DONE status=failed names the wrong offset */
	TF_INTR_UNMASKED,	/* pvscsi, nvme, e1000e, virtio-net: DUMPSTART leaves the device's interrupt unmasked (IF stays 0) */
	TF_NET_WINDOW,		/* netdump: twice the agreed window of messages in flight */
	TF_NET_NOPAD,		/* netdump: frames not padded to a multiple of DUMPQUERY's min_tsize */
	TF_NET_NO_FINISH,	/* netdump: DUMPEND sends no FINISH (the dump is on the server, never closed) */
	TF_LZ4_OFFSET,		/* compress=lz4: every match offset written one byte too far back */
	TF_LZ4_STUCK,		/* compress=lz4: every frame of an area from the area's first bytes */
	TF_ASYNC_BATCH,		/* virtio-blk: DUMP_ASYNC writes ride on the next doorbell (its post); dumpdev.c waits for none first */
	TF_BOUNCE_SHORT,	/* nvme: a bounced write copies only its first iovec into the bounce buffer */
	TF_POLL_KEYS,		/* shell: reads the UART's status in a loop between keys instead of halting */
	TF_CONSOLE_IRQ_LIVE,	/* crash path: COM1's receive interrupt left on and routed (as the shell's wait for keys has it) */
	TF_COUNT,
};

extern uint32_t testfaults;

static inline bool testfault(enum testfault_bit bit)
{
	return (testfaults >> bit) & 1u;
}

/* testfault=irq-on, from the start of the crash-time sequence on (dump/dumpsys.c sets it): the
 * queues the dump path sets up leave their device interrupts on. Dump path state. */
extern bool testfault_irq_on_now;

/* Turn on the faults a comma-separated list names; false (nothing changed) on an unknown word. */
bool testfault_parse(const char *list, size_t len);

#endif
