/*
 * The legacy 8259 PICs. This kernel takes no interrupts at all (IF stays 0), but a PIC left
 * as the firmware set it could still raise lines that would become visible the moment
 * anything enabled interrupts: reinitialise both to vectors 0x20-0x2f and mask everything.
 */
#include "arch/x86/pic.h"
#include "arch/x86/io.h"

#define PIC1_CMD	0x20
#define PIC1_DATA	0x21
#define PIC2_CMD	0xa0
#define PIC2_DATA	0xa1

#define ICW1_INIT_ICW4	0x11
#define ICW4_8086	0x01

void pic_mask_all(void)
{
	outb(PIC1_CMD, ICW1_INIT_ICW4);
	outb(PIC2_CMD, ICW1_INIT_ICW4);
	outb(PIC1_DATA, 0x20);		/* vector offset */
	outb(PIC2_DATA, 0x28);
	outb(PIC1_DATA, 0x04);		/* slave on IRQ2 */
	outb(PIC2_DATA, 0x02);
	outb(PIC1_DATA, ICW4_8086);
	outb(PIC2_DATA, ICW4_8086);
	outb(PIC1_DATA, 0xff);		/* mask all */
	outb(PIC2_DATA, 0xff);
}
