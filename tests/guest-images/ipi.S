/* ipi: inter-processor interrupts by destination, both ways (run with -smp 2). The boot CPU
 * copies a real-mode trampoline to 0x8000 and sends INIT, STARTUP, STARTUP to APIC ID 1
 * (physical destination, no shorthand), then sleeps in HLT. CPU 1 goes real -> protected ->
 * long mode, checks its APIC ID register against CPUID, prints, and sends the boot CPU a fixed
 * IPI (vector 0x60) and an NMI. The boot CPU wakes for both; a periodic APIC timer (1 ms) is
 * its watchdog: after ~3 s without them it reports a timeout. Ends with debug-exit 0; 1 on
 * timeout, 2 if CPU 1's APIC ID register disagrees with CPUID. */
    .include "lib/common.inc"
    .include "lib/apic.inc"

    .set TRAMPOLINE, 0x8000
    .set VEC_IPI, 0x60
    .set VEC_WATCHDOG, 0x40
    .set NMI_VECTOR, 2
    .set WATCHDOG_TICKS, 3000

    .text
    .globl main
main:
    push %rbx
    push %r12
    sub $8, %rsp
    mov $VEC_IPI, %edi
    lea ipi_isr(%rip), %rsi
    call set_gate
    mov $NMI_VECTOR, %edi
    lea nmi_isr(%rip), %rsi
    call set_gate
    mov $VEC_WATCHDOG, %edi
    lea watchdog_isr(%rip), %rsi
    call set_gate

    lea ap_trampoline(%rip), %rsi
    mov $TRAMPOLINE, %edi
    mov $(ap_trampoline_end - ap_trampoline), %ecx
1:  movzbl (%rsi), %eax
    mov %al, (%rdi)
    inc %rsi
    inc %rdi
    dec %ecx
    jnz 1b

    PRINT "ipi: cpu 0 sends INIT, STARTUP, STARTUP to APIC ID 1\n"
    mov $LAPIC, %ebx
    movl $0x1FF, LAPIC_SVR(%rbx)
    movl $(1 << 24), LAPIC_ICR_HI(%rbx)
    movl $(ICR_INIT | ICR_ASSERT), LAPIC_ICR_LO(%rbx)
    call wait_icr
    lea user_spin(%rip), %rdi
    mov $100000, %esi
    call run_user
    movl $(1 << 24), LAPIC_ICR_HI(%rbx)
    movl $(ICR_STARTUP | ICR_ASSERT | (TRAMPOLINE >> 12)), LAPIC_ICR_LO(%rbx)
    call wait_icr
    lea user_spin(%rip), %rdi
    mov $10000, %esi
    call run_user
    movl $(1 << 24), LAPIC_ICR_HI(%rbx)
    movl $(ICR_STARTUP | ICR_ASSERT | (TRAMPOLINE >> 12)), LAPIC_ICR_LO(%rbx)
    call wait_icr

    movl $TIMER_DIV_16, LAPIC_TIMER_DIV(%rbx)
    movl $(VEC_WATCHDOG | LVT_PERIODIC), LAPIC_LVT_TIMER(%rbx)
    movl $62500, LAPIC_TIMER_INIT(%rbx)
2:  sti
    hlt
    cli
    cmpl $0, ap_bad_id(%rip)
    jne 8f
    cmpl $0, ipis(%rip)
    je 3f
    cmpl $0, nmis(%rip)
    jne 4f
3:  cmpl $WATCHDOG_TICKS, watchdog(%rip)
    jb 2b
    movl $LVT_MASKED, LAPIC_LVT_TIMER(%rbx)
    PRINT "ipi: timeout waiting for cpu 1's IPI and NMI\n"
    mov $1, %eax
    jmp 9f
4:  movl $LVT_MASKED, LAPIC_LVT_TIMER(%rbx)
    PRINT "ipi: cpu 0 woke for cpu 1's fixed IPI 0x60 and its NMI\n"
    xor %eax, %eax
    jmp 9f
8:  movl $LVT_MASKED, LAPIC_LVT_TIMER(%rbx)
    PRINT "ipi: cpu 1's APIC ID register disagrees with CPUID\n"
    mov $2, %eax
9:  add $8, %rsp
    pop %r12
    pop %rbx
    ret

/* Waits (bounded) until the local APIC at RBX has sent the last IPI. */
wait_icr:
    mov $100000, %ecx
1:  testl $ICR_BUSY, LAPIC_ICR_LO(%rbx)
    jz 2f
    pause
    dec %ecx
    jnz 1b
2:  ret

ipi_isr:
    incl ipis(%rip)
    call lapic_eoi
    iretq

nmi_isr:
    incl nmis(%rip)
    iretq

watchdog_isr:
    incl watchdog(%rip)
    call lapic_eoi
    iretq

/* ---- CPU 1 ---- */

    .code16
ap_trampoline:
    cli
    xor %ax, %ax
    mov %ax, %ds
    lgdtl TRAMPOLINE + (ap_gdt_ptr - ap_trampoline)
    mov %cr0, %eax
    or $CR0_PE, %eax
    mov %eax, %cr0
    ljmpl $KCODE32, $ap_entry32
    .balign 8
ap_gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt
ap_trampoline_end:

    .code32
ap_entry32:
    ENTER_LONG_MODE ap_entry64

    .code64
ap_entry64:
    mov $KDATA, %eax
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    lea ap_stack_top(%rip), %rsp
    mov $LAPIC, %ebx
    movl $0x1FF, LAPIC_SVR(%rbx)
    mov $1, %eax
    cpuid
    shr $24, %ebx                    /* initial APIC ID */
    mov $LAPIC, %eax
    mov LAPIC_ID(%rax), %ecx
    shr $24, %ecx
    cmp %ebx, %ecx
    je 1f
    movl $1, ap_bad_id(%rip)
1:  PRINT "ipi: cpu "
    mov %ebx, %edi
    call serial_print_dec
    PRINT " up in long mode, sends a fixed IPI and an NMI to APIC ID 0\n"
    mov $LAPIC, %ebx
    movl $0, LAPIC_ICR_HI(%rbx)
    movl $(ICR_FIXED | ICR_ASSERT | VEC_IPI), LAPIC_ICR_LO(%rbx)
    call wait_icr
    movl $0, LAPIC_ICR_HI(%rbx)
    movl $(ICR_NMI | ICR_ASSERT), LAPIC_ICR_LO(%rbx)
    call wait_icr
2:  cli
    hlt
    jmp 2b

    .data
    .balign 4
ipis:
    .long 0
nmis:
    .long 0
watchdog:
    .long 0
ap_bad_id:
    .long 0

    .bss
    .balign 16
ap_stack:
    .skip 4096
ap_stack_top:
    .text
