/*
 * The HBA registry: each HBA driver probes the PCI functions it knows and registers one
 * struct scsi_hba per adapter; target drivers find them by driver name and index.
 */
#include "scsi/scsi.h"
#include "lib/errno.h"
#include "lib/linkset.h"
#include "lib/printf.h"
#include "lib/string.h"

#define SCSI_MAX_HBAS	8

static struct scsi_hba *hbas[SCSI_MAX_HBAS];
static int nhbas;
static bool probed;

/* The HBA drivers built in (SCSI_HBA_DRIVER, gathered by linker.ld). */
extern const struct scsi_hba_driver __hba_drivers_start[], __hba_drivers_end[];

int scsi_hba_register(struct scsi_hba *hba)
{
	if (!hba || !hba->tran || !hba->tran->tran_name || !hba->tran->tran_start)
		return EINVAL;
	if (nhbas == SCSI_MAX_HBAS)
		return ENOSPC;
	for (int i = 0; i < nhbas; i++)
		if (hbas[i] == hba)
			return EEXIST;
	if (hba->limits.max_segs == 0 || hba->limits.max_segs > SCSI_MAX_SGL)
		hba->limits.max_segs = hba->limits.max_segs ? SCSI_MAX_SGL : 1;
	if (hba->limits.max_seg_len == 0)
		hba->limits.max_seg_len = 4096;
	if (hba->limits.max_xfer == 0)
		hba->limits.max_xfer = hba->limits.max_seg_len;
	if (hba->limits.dma_addr_max == 0)
		hba->limits.dma_addr_max = 0xffffffffull;
	hbas[nhbas++] = hba;
	return 0;
}

struct scsi_hba *scsi_hba_find(const char *driver_name, int index)
{
	for (int i = 0; i < nhbas; i++)
		if (strcmp(hbas[i]->tran->tran_name, driver_name) == 0 && index-- == 0)
			return hbas[i];
	return 0;
}

int scsi_hba_count(void) { return nhbas; }
struct scsi_hba *scsi_hba_get(int i) { return i >= 0 && i < nhbas ? hbas[i] : 0; }

const struct scsi_hba_driver *scsi_hba_driver_by_word(const char *v, size_t len)
{
	return linkset_find_word(__hba_drivers_start, __hba_drivers_end, sizeof(struct scsi_hba_driver),
				 offsetof(struct scsi_hba_driver, dumpdev_word), v, len);
}

void scsi_hba_probe_all(void)
{
	if (probed)
		return;
	probed = true;
	for (const struct scsi_hba_driver *d = __hba_drivers_start; d < __hba_drivers_end; d++)
		d->probe();
}
