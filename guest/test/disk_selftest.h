#ifndef TEST_DISK_SELFTEST_H
#define TEST_DISK_SELFTEST_H

/*
 * The shell's `disktest`: write three patterns to the dump partition of the dump disk
 * (dumpdev=) through its dddump alone (DUMPQUERY, DUMPSTART, DUMPWRITE, DUMPEND), with
 * iovec lists whose boundaries lie inside pages (test/disk_selftest.c). Returns 0, or the errno
 * that ended it (ENODEV: no dump disk or scratch memory).
 */
int disk_selftest_run(void);

#endif
