/* Local APIC (xAPIC MMIO mode), only as an NMI source: no interrupt is ever unmasked. */
#include "arch/x86/apic.h"
#include "arch/x86/cpu.h"
#include "arch/x86/io.h"
#include "arch/x86/paging.h"

#define APIC_ID		0x020
#define APIC_SVR	0x0f0
#define APIC_ICR_LOW	0x300
#define APIC_ICR_HIGH	0x310
#define APIC_LVT_TIMER	0x320
#define APIC_LVT_THERM	0x330
#define APIC_LVT_PERF	0x340
#define APIC_LVT_LINT0	0x350
#define APIC_LVT_LINT1	0x360
#define APIC_LVT_ERROR	0x370

#define APIC_SVR_ENABLE		0x100
#define APIC_SPURIOUS_VEC	0xff
#define APIC_LVT_MASKED		0x10000
#define APIC_DM_NMI		0x400
#define APIC_ICR_ASSERT		0x4000
#define APIC_ICR_PENDING	0x1000

static uintptr_t apic_mmio;

static uint32_t apic_read(uint32_t reg) { return mmio_read32(apic_mmio + reg); }
static void apic_write(uint32_t reg, uint32_t v) { mmio_write32(apic_mmio + reg, v); }

uint64_t apic_base(void) { return apic_mmio; }

uint32_t apic_id(void)
{
	return apic_mmio ? apic_read(APIC_ID) >> 24 : 0;
}

bool apic_init(void)
{
	if (!cpu_features.apic)
		return false;
	apic_mmio = rdmsr(MSR_IA32_APIC_BASE) & 0xfffff000ull;
	paging_set_uncached(apic_mmio, 4096);

	apic_write(APIC_SVR, APIC_SVR_ENABLE | APIC_SPURIOUS_VEC);
	apic_write(APIC_LVT_TIMER, APIC_LVT_MASKED);
	apic_write(APIC_LVT_THERM, APIC_LVT_MASKED);
	apic_write(APIC_LVT_PERF, APIC_LVT_MASKED);
	apic_write(APIC_LVT_LINT0, APIC_LVT_MASKED);
	apic_write(APIC_LVT_LINT1, APIC_DM_NMI);
	apic_write(APIC_LVT_ERROR, APIC_LVT_MASKED);
	return true;
}

void apic_self_nmi(void)
{
	if (!apic_mmio)
		return;
	apic_write(APIC_ICR_HIGH, apic_id() << 24);
	apic_write(APIC_ICR_LOW, APIC_DM_NMI | APIC_ICR_ASSERT);
}
