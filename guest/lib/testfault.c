/* The testfault words (lib/testfault.h): the one table of them. */
#include "lib/testfault.h"
#include "lib/dumpstate.h"
#include "lib/string.h"

uint32_t testfaults;
bool testfault_irq_on_now __dumpstate;

static const char *const words[TF_COUNT] = {
	[TF_IRQ_ON] = "irq-on",
	[TF_NO_FLUSH] = "no-flush",
	[TF_EARLY_FLUSH] = "early-flush",
	[TF_NO_WAIT] = "no-wait",
	[TF_LEADER_FIRST] = "leader-first",
	[TF_IN_PLACE] = "in-place",
	[TF_MASK_ONLY] = "mask-only",
	[TF_STAGE_STUCK] = "stage-stuck",
	[TF_SKIP_LOW] = "skip-low",
	[TF_FPU_CLOBBER] = "fpu-clobber",
	[TF_WRONG_REPORT] = "wrong-report",
	[TF_INTR_UNMASKED] = "intr-unmasked",
	[TF_NET_WINDOW] = "net-window",
	[TF_NET_NOPAD] = "net-nopad",
	[TF_NET_NO_FINISH] = "net-no-finish",
	[TF_LZ4_OFFSET] = "lz4-offset",
	[TF_LZ4_STUCK] = "lz4-stuck",
	[TF_ASYNC_BATCH] = "async-batch",
	[TF_BOUNCE_SHORT] = "bounce-short",
	[TF_POLL_KEYS] = "poll-keys",
	[TF_CONSOLE_IRQ_LIVE] = "console-irq-live",
};

bool testfault_parse(const char *list, size_t len)
{
	uint32_t bits = 0;

	while (len) {
		size_t n = 0;
		int bit;

		while (n < len && list[n] != ',')
			n++;
		for (bit = 0; bit < TF_COUNT; bit++)
			if (strlen(words[bit]) == n && strncmp(list, words[bit], n) == 0)
				break;
		if (bit == TF_COUNT)
			return false;
		bits |= 1u << bit;
		list += n + (n < len);
		len -= n + (n < len);
	}
	testfaults |= bits;
	return bits != 0;
}
