/* pit_irq: PIT + PIC interrupts and HLT wake-up. Programs the 8259 pair (vectors 0x20/0x28),
 * the 8254's channel 0 in mode 2 at ~1 kHz, unmasks IRQ 0 only, and sleeps in HLT with IF=1
 * until the timer handler has counted 10 interrupts (each EOIed at the master PIC). */
    .include "lib/common.inc"

    .set TICKS_WANTED, 10
    .set PIT_1KHZ, 1193

    .text
    .globl main
main:
    sub $8, %rsp
    PRINT "pit_irq: PIC at vectors 0x20/0x28, PIT channel 0 at 1 kHz\n"
    /* IDT gate 0x20 -> timer_isr (64-bit interrupt gate, DPL 0). */
    lea idt + 0x20 * 16(%rip), %rdi
    lea timer_isr(%rip), %rax
    mov %ax, (%rdi)
    movw $KCODE64, 2(%rdi)
    movw $0x8E00, 4(%rdi)
    shr $16, %rax
    mov %ax, 6(%rdi)
    shr $16, %rax
    mov %eax, 8(%rdi)
    movl $0, 12(%rdi)
    /* 8259 init: ICW1 edge + ICW4, ICW2 vector bases, ICW3 cascade on IRQ 2, ICW4 8086 mode. */
    mov $0x11, %al
    out %al, $0x20
    out %al, $0xa0
    mov $0x20, %al
    out %al, $0x21
    mov $0x28, %al
    out %al, $0xa1
    mov $0x04, %al
    out %al, $0x21
    mov $0x02, %al
    out %al, $0xa1
    mov $0x01, %al
    out %al, $0x21
    out %al, $0xa1
    mov $0xfe, %al                   /* only IRQ 0 */
    out %al, $0x21
    mov $0xff, %al
    out %al, $0xa1
    /* 8254 channel 0, lobyte/hibyte, mode 2 (rate generator). */
    mov $0x34, %al
    out %al, $0x43
    mov $(PIT_1KHZ & 0xff), %al
    out %al, $0x40
    mov $(PIT_1KHZ >> 8), %al
    out %al, $0x40
1:  sti
    hlt
    cli
    cmpl $TICKS_WANTED, ticks(%rip)
    jb 1b
    mov $0xff, %al
    out %al, $0x21
    PRINT "pit_irq: 10 timer interrupts, each one woke the CPU from HLT\n"
    add $8, %rsp
    xor %eax, %eax
    ret

timer_isr:
    push %rax
    incl ticks(%rip)
    mov $0x20, %al                   /* non-specific EOI */
    out %al, $0x20
    pop %rax
    iretq

    .data
    .balign 4
ticks:
    .long 0
