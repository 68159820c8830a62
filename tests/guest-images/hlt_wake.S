/* hlt_wake: a machine where every CPU sleeps. The boot CPU arms the local APIC timer one-shot
 * for 25 ms (divide by 1 at a 1 GHz APIC bus) and HLTs, 20 times; the other CPUs were never
 * started (they wait for STARTUP). So for ~0.5 s nothing runs and only the timer can wake
 * anyone: the emulator must fire it while all its vCPU threads idle, and the test checks the
 * host spent little CPU time doing so. Ends with debug-exit 0. */
    .include "lib/common.inc"
    .include "lib/apic.inc"

    .set VEC_TIMER, 0x40
    .set ROUNDS, 20

    .text
    .globl main
main:
    push %rbx
    push %r12
    sub $8, %rsp
    PRINT "hlt_wake: 20 x 25 ms one-shot APIC timer, HLT in between\n"
    mov $VEC_TIMER, %edi
    lea timer_isr(%rip), %rsi
    call set_gate
    mov $LAPIC, %ebx
    movl $0x1FF, LAPIC_SVR(%rbx)
    movl $TIMER_DIV_1, LAPIC_TIMER_DIV(%rbx)
    movl $VEC_TIMER, LAPIC_LVT_TIMER(%rbx)
    xor %r12d, %r12d
1:  movl $25000000, LAPIC_TIMER_INIT(%rbx)
    inc %r12d
2:  sti
    hlt
    cli
    cmp %r12d, ticks(%rip)
    jb 2b
    cmp $ROUNDS, %r12d
    jb 1b
    PRINT "hlt_wake: woke 20 times\n"
    xor %eax, %eax
    add $8, %rsp
    pop %r12
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
