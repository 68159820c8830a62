/* lapic_timer: the local APIC timer, periodic then one-shot, each expiry waking the CPU from
 * HLT. Enables the APIC (SVR), points vector 0x40 at an ISR that counts and EOIs, runs the
 * timer periodic (divide by 16, initial count 62500: 1 ms at a 1 GHz APIC bus) until 5
 * interrupts came, checks the current count moves down, masks it; then one-shot (divide by
 * 1, 2 ms): exactly one interrupt, after which the current count reads 0; a second one-shot
 * arms and fires once more. Ends with debug-exit 0; 1 if a count is wrong. */
    .include "lib/common.inc"
    .include "lib/apic.inc"

    .set VEC_PERIODIC, 0x40
    .set VEC_ONESHOT, 0x41

    .text
    .globl main
main:
    push %rbx
    PRINT "lapic_timer: APIC timer on vectors 0x40 (periodic) and 0x41 (one-shot)\n"
    mov $VEC_PERIODIC, %edi
    lea periodic_isr(%rip), %rsi
    call set_gate
    mov $VEC_ONESHOT, %edi
    lea oneshot_isr(%rip), %rsi
    call set_gate
    mov $LAPIC, %ebx
    movl $0x1FF, LAPIC_SVR(%rbx)
    movl $TIMER_DIV_16, LAPIC_TIMER_DIV(%rbx)
    movl $(VEC_PERIODIC | LVT_PERIODIC), LAPIC_LVT_TIMER(%rbx)
    movl $62500, LAPIC_TIMER_INIT(%rbx)
    mov LAPIC_TIMER_CUR(%rbx), %eax
    mov LAPIC_TIMER_CUR(%rbx), %ecx
    cmp $62500, %eax
    ja fail
    test %ecx, %ecx
    jz fail
1:  sti
    hlt
    cli
    cmpl $5, periodic_ticks(%rip)
    jb 1b
    movl $(VEC_PERIODIC | LVT_PERIODIC | LVT_MASKED), LAPIC_LVT_TIMER(%rbx)
    movl $0, LAPIC_TIMER_INIT(%rbx)
    PRINT "lapic_timer: 5 periodic interrupts, each woke the CPU from HLT\n"

    movl $TIMER_DIV_1, LAPIC_TIMER_DIV(%rbx)
    movl $VEC_ONESHOT, LAPIC_LVT_TIMER(%rbx)
    movl $2000000, LAPIC_TIMER_INIT(%rbx)
2:  sti
    hlt
    cli
    cmpl $0, oneshot_ticks(%rip)
    je 2b
    cmpl $0, LAPIC_TIMER_CUR(%rbx)
    jne fail
    movl $1000000, LAPIC_TIMER_INIT(%rbx)
3:  sti
    hlt
    cli
    cmpl $2, oneshot_ticks(%rip)
    jb 3b
    cmpl $2, oneshot_ticks(%rip)
    jne fail
    cmpl $0, LAPIC_TIMER_CUR(%rbx)
    jne fail
    PRINT "lapic_timer: each one-shot fired once, then the count read 0\n"
    xor %eax, %eax
    pop %rbx
    ret
fail:
    PRINT "lapic_timer: wrong count\n"
    mov $1, %eax
    pop %rbx
    ret

periodic_isr:
    incl periodic_ticks(%rip)
    call lapic_eoi
    iretq

oneshot_isr:
    incl oneshot_ticks(%rip)
    call lapic_eoi
    iretq

    .data
    .balign 4
periodic_ticks:
    .long 0
oneshot_ticks:
    .long 0
