/* irq_window: interrupts that reach a CPU which never halts. The local APIC timer (vector
 * 0x42, an ISR that counts and EOIs) runs periodic at 1 ms while the CPU spins on the count
 * with IF = 1 and no HLT and no I/O: each interrupt must stop the running CPU (under KVM
 * without the in-kernel irqchip: a kick out of KVM_RUN, then KVM_INTERRUPT). Then, with
 * IF = 0, a 1 ms one-shot expires while the CPU polls the APIC's IRR until the vector shows
 * up there; the interrupt must wait (the count of interrupts stays) and arrive soon after STI
 * (at once on hardware; the bound of 100000 loop rounds leaves room for an emulator's kick;
 * under KVM without the in-kernel irqchip: the interrupt window exit). Ends with debug-exit 0;
 * 1 if the one-shot came while IF = 0 or not soon after STI. */
    .include "lib/common.inc"
    .include "lib/apic.inc"

    .set VEC_TIMER, 0x42
    .set IRR_VEC_TIMER, 0x220       /* IRR word of vectors 0x40-0x5f: 0x42 is bit 2 */

    .text
    .globl main
main:
    push %rbx
    PRINT "irq_window: APIC timer on vector 0x42, the CPU never halts\n"
    mov $VEC_TIMER, %edi
    lea timer_isr(%rip), %rsi
    call set_gate
    mov $LAPIC, %ebx
    movl $0x1FF, LAPIC_SVR(%rbx)
    movl $TIMER_DIV_16, LAPIC_TIMER_DIV(%rbx)
    movl $(VEC_TIMER | LVT_PERIODIC), LAPIC_LVT_TIMER(%rbx)
    movl $62500, LAPIC_TIMER_INIT(%rbx)
    sti
1:  pause
    cmpl $5, ticks(%rip)
    jb 1b
    cli
    movl $(VEC_TIMER | LVT_PERIODIC | LVT_MASKED), LAPIC_LVT_TIMER(%rbx)
    movl $0, LAPIC_TIMER_INIT(%rbx)
    PRINT "irq_window: 5 periodic interrupts reached a spinning CPU\n"

    mov ticks(%rip), %eax
    mov %eax, before(%rip)
    movl $TIMER_DIV_1, LAPIC_TIMER_DIV(%rbx)
    movl $VEC_TIMER, LAPIC_LVT_TIMER(%rbx)
    movl $1000000, LAPIC_TIMER_INIT(%rbx)
2:  testl $(1 << (VEC_TIMER - 0x40)), IRR_VEC_TIMER(%rbx)
    jz 2b
    mov before(%rip), %eax
    cmp ticks(%rip), %eax
    jne fail                /* delivered with IF = 0 */
    inc %eax
    mov $100000, %ecx
    sti
3:  cmp ticks(%rip), %eax
    je 4f
    dec %ecx
    jnz 3b
    jmp fail                /* not delivered after STI */
4:  cli
    PRINT "irq_window: the one-shot waited in IRR while IF=0 and came after STI\n"
    xor %eax, %eax
    pop %rbx
    ret
fail:
    cli
    PRINT "irq_window: the one-shot came while IF=0 or not after STI\n"
    mov $1, %eax
    pop %rbx
    ret

timer_isr:
    incl ticks(%rip)
    call lapic_eoi
    iretq

    .data
    .balign 4
ticks:
    .long 0
before:
    .long 0
