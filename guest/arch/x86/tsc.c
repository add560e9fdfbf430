/*
 * TSC calibration with PIT channel 2 in mode 0 (interrupt on terminal count), polled through
 * port 0x61 bit 5 (OUT2). Channel 2's gate is port 0x61 bit 0, so the count starts exactly
 * when we raise the gate; the speaker stays off (bit 1). This works without interrupts under
 * both TCG and KVM.
 */
#include "arch/x86/tsc.h"
#include "arch/x86/io.h"

#define PIT_HZ		1193182ull
#define PIT_CH2_DATA	0x42
#define PIT_MODE	0x43
#define PORT_B		0x61
#define PORT_B_GATE2	0x01
#define PORT_B_SPEAKER	0x02
#define PORT_B_OUT2	0x20

#define CALIBRATION_MS	10
#define CALIBRATION_RUNS 3
/* The PIT is polled a bounded number of times: a broken PIT must not hang the boot. */
#define MAX_POLLS	50000000ul
#define FALLBACK_HZ	2000000000ull

uint64_t tsc_hz = FALLBACK_HZ;
bool tsc_calibrated;

static uint64_t measure_once(void)
{
	uint16_t count = (uint16_t)(PIT_HZ * CALIBRATION_MS / 1000);
	uint8_t portb = inb(PORT_B) & ~(PORT_B_SPEAKER | PORT_B_GATE2);
	uint64_t t0, t1;
	unsigned long polls = 0;

	outb(PORT_B, portb);				/* gate low: counter held */
	outb(PIT_MODE, 0xb0);				/* ch 2, lo/hi byte, mode 0, binary */
	outb(PIT_CH2_DATA, count & 0xff);
	outb(PIT_CH2_DATA, count >> 8);

	t0 = rdtsc();
	outb(PORT_B, portb | PORT_B_GATE2);		/* start counting */
	while (!(inb(PORT_B) & PORT_B_OUT2)) {
		if (++polls > MAX_POLLS)
			return 0;
	}
	t1 = rdtsc();
	outb(PORT_B, portb);
	return (t1 - t0) * PIT_HZ / count;
}

void tsc_calibrate(void)
{
	uint64_t hz[CALIBRATION_RUNS];
	int n = 0;

	for (int i = 0; i < CALIBRATION_RUNS; i++) {
		uint64_t v = measure_once();

		if (v)
			hz[n++] = v;
	}
	if (n == 0) {
		tsc_hz = FALLBACK_HZ;
		tsc_calibrated = false;
		return;
	}
	/* Median: a vCPU descheduled during one run only makes that run too long. */
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && hz[j - 1] > hz[j]; j--) {
			uint64_t t = hz[j];
			hz[j] = hz[j - 1];
			hz[j - 1] = t;
		}
	tsc_hz = hz[n / 2];
	tsc_calibrated = true;
}

uint64_t tsc_from_us(uint64_t us)
{
	/* Split to avoid overflow for long intervals. */
	return (us / 1000000) * tsc_hz + (us % 1000000) * tsc_hz / 1000000;
}

uint64_t tsc_to_us(uint64_t ticks)
{
	return (ticks / tsc_hz) * 1000000 + (ticks % tsc_hz) * 1000000 / tsc_hz;
}

void udelay(uint64_t us)
{
	uint64_t deadline = deadline_after_us(us);

	while (!deadline_passed(deadline))
		cpu_relax();
}
