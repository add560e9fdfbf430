#ifndef TEST_SELFTEST_H
#define TEST_SELFTEST_H

/*
 * The dump facility's API self-tests (docs/components.md, "Self-tests"), for the shell's
 * `selftest`: dmp_ctl, the global buffer, ras_control and its staging buffers, and the pinning
 * self-test. They work on private registrations removed afterwards; the real ones stay as they
 * were. Prints `SELFTEST <name> pass|fail <detail>` per test, then
 * `SELFTEST-END passed=P failed=F`. Returns the number of failures.
 */
int selftest_run(void);

#endif
