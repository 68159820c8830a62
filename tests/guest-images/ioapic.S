/* ioapic: an ISA interrupt through the I/O APIC. Reads the IOAPIC's entry count, routes input
 * 2 (the PIT's IRQ 0, as the MADT's interrupt source override says) to vector 0x50 on APIC 0
 * (physical, edge, active high), programs PIT channel 0 at ~1 kHz, and sleeps in HLT until the
 * ISR has counted 10 interrupts (each EOIed at the local APIC). The 8259s stay masked (boot.inc
 * masks them), so every interrupt came through the IOAPIC. Ends with debug-exit 0. */
    .include "lib/common.inc"
    .include "lib/apic.inc"

    .set VEC_PIT, 0x50
    .set PIT_PIN, 2
    .set PIT_1KHZ, 1193

    .text
    .globl main
main:
    push %rbx
    PRINT "ioapic: "
    mov $IOAPIC, %ebx
    movl $IOAPIC_VER, IOAPIC_REGSEL(%rbx)
    mov IOAPIC_WIN(%rbx), %edi
    shr $16, %edi
    and $0xff, %edi
    inc %edi
    call serial_print_dec
    PRINT " inputs; PIT on input 2 to vector 0x50\n"
    mov $VEC_PIT, %edi
    lea pit_isr(%rip), %rsi
    call set_gate
    mov $LAPIC, %eax
    movl $0x1FF, LAPIC_SVR(%rax)
    mov $(IOAPIC_REDIR + 2 * PIT_PIN + 1), %edi
    xor %esi, %esi                   /* destination APIC ID 0 */
    call ioapic_write
    mov $(IOAPIC_REDIR + 2 * PIT_PIN), %edi
    mov $VEC_PIT, %esi               /* fixed, physical, edge, high, unmasked */
    call ioapic_write
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
    cmpl $10, ticks(%rip)
    jb 1b
    mov $(IOAPIC_REDIR + 2 * PIT_PIN), %edi
    mov $(VEC_PIT | (1 << 16)), %esi /* masked again */
    call ioapic_write
    PRINT "ioapic: 10 PIT interrupts through the IOAPIC woke the CPU from HLT\n"
    xor %eax, %eax
    pop %rbx
    ret

pit_isr:
    incl ticks(%rip)
    call lapic_eoi
    iretq

    .data
    .balign 4
ticks:
    .long 0
