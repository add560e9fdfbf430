#ifndef TEST_LSI_SELFTEST_H
#define TEST_LSI_SELFTEST_H

/*
 * The shell's `lsi-selftest`: exercise LSI 53C895A HBA `index` (registration order) and the
 * disk at `target`, LUN 0, through the HBA interface (scsi/hba.h) only: the targets present,
 * TEST UNIT READY, INQUIRY, READ CAPACITY, reads in odd pieces, short transfers (phase
 * mismatches), then a non-destructive write/read round trip (saved and restored) at byte
 * offset 512 KiB of the disk, which on dumpbed disks lies between the GPT and the first
 * partition; BUS DEVICE RESET, a bus reset, and a command that passes its pkt_time. Scratch
 * memory is free RAM past the kernel image (interactive use only). Prints what it does;
 * returns 0 on success, else ENODEV, ENOSPC or EIO. The HBAs must have been probed.
 */
int lsi_selftest_run(int index, int target);

#endif
