/* Port I/O and MMIO accessors with explicit ordering. */
#ifndef ARCH_X86_IO_H
#define ARCH_X86_IO_H

#include <stdint.h>

/* Compiler-only barrier: x86 keeps WB loads and stores in program order w.r.t. each other
 * except store->load, so this is enough between two accesses of the same kind. */
#define barrier() __asm__ __volatile__("" ::: "memory")

/* Full barriers: used where a device must see our ring/buffer stores before a doorbell, or we
 * must see its DMA writes before reading what it wrote. */
static inline void mb(void) { __asm__ __volatile__("mfence" ::: "memory"); }
static inline void rmb(void) { __asm__ __volatile__("lfence" ::: "memory"); }
static inline void wmb(void) { __asm__ __volatile__("sfence" ::: "memory"); }

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ __volatile__("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline void outw(uint16_t port, uint16_t v)
{
	__asm__ __volatile__("outw %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ __volatile__("outl %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

/* n bytes to one port with a single string instruction: under KVM one exit for all of them
 * (the port's device takes them one by one), where a loop of outb exits once a byte. */
static inline void outsb(uint16_t port, const void *buf, uint64_t n)
{
	__asm__ __volatile__("rep outsb" : "+S"(buf), "+c"(n) : "d"(port) : "memory");
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ __volatile__("inb %1, %0" : "=a"(v) : "Nd"(port) : "memory");
	return v;
}

static inline uint16_t inw(uint16_t port)
{
	uint16_t v;
	__asm__ __volatile__("inw %1, %0" : "=a"(v) : "Nd"(port) : "memory");
	return v;
}

static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ __volatile__("inl %1, %0" : "=a"(v) : "Nd"(port) : "memory");
	return v;
}

/* MMIO: volatile accesses with a "memory" clobber so the compiler neither merges, reorders
 * nor caches them across other memory accesses. Device memory is mapped uncached. */
static inline uint8_t mmio_read8(uintptr_t addr)
{
	uint8_t v;
	__asm__ __volatile__("movb %1, %0" : "=q"(v) : "m"(*(volatile uint8_t *)addr) : "memory");
	return v;
}

static inline uint16_t mmio_read16(uintptr_t addr)
{
	uint16_t v;
	__asm__ __volatile__("movw %1, %0" : "=r"(v) : "m"(*(volatile uint16_t *)addr) : "memory");
	return v;
}

static inline uint32_t mmio_read32(uintptr_t addr)
{
	uint32_t v;
	__asm__ __volatile__("movl %1, %0" : "=r"(v) : "m"(*(volatile uint32_t *)addr) : "memory");
	return v;
}

static inline void mmio_write8(uintptr_t addr, uint8_t v)
{
	__asm__ __volatile__("movb %1, %0" : "=m"(*(volatile uint8_t *)addr) : "q"(v) : "memory");
}

static inline void mmio_write16(uintptr_t addr, uint16_t v)
{
	__asm__ __volatile__("movw %1, %0" : "=m"(*(volatile uint16_t *)addr) : "r"(v) : "memory");
}

static inline void mmio_write32(uintptr_t addr, uint32_t v)
{
	__asm__ __volatile__("movl %1, %0" : "=m"(*(volatile uint32_t *)addr) : "r"(v) : "memory");
}

/* 64-bit registers are written as two 32-bit halves, low first (virtio allows this). */
static inline void mmio_write64_split(uintptr_t addr, uint64_t v)
{
	mmio_write32(addr, (uint32_t)v);
	mmio_write32(addr + 4, (uint32_t)(v >> 32));
}

static inline uint64_t mmio_read64_split(uintptr_t addr)
{
	uint64_t lo = mmio_read32(addr);
	uint64_t hi = mmio_read32(addr + 4);
	return lo | (hi << 32);
}

/* Volatile loads/stores of ordinary (DMA-shared) memory. */
#define READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))

#endif
