#ifndef ARCH_X86_PIC_H
#define ARCH_X86_PIC_H

/* Remap the two 8259s away from the exception vectors and mask every line. */
void pic_mask_all(void);

#endif
