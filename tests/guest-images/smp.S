/* smp: starts the application processors the way an OS does and checks they all come up.
 *
 * The boot CPU counts the enabled CPUs in the ACPI MADT, copies a real-mode trampoline to
 * 0x8000 and sends, through its local APIC (MMIO at 0xFEE00000), INIT then two STARTUP IPIs
 * (vector 0x08 = page 0x8000) to all CPUs but itself. Each AP goes real mode -> 32-bit
 * protected mode -> 64-bit long mode (the same ENTER_LONG_MODE as the boot CPU), takes a
 * stack, and under a spinlock prints "cpu N up" (N = its initial APIC ID from CPUID leaf 1,
 * EBX[31:24]) and increments `cpus_up` with a LOCK-prefixed add; then it halts with
 * interrupts off. The boot CPU waits at CPL 3 (no emulated spinning at CPL 0) until `cpus_up`
 * reaches the MADT's count or a bound (2^32 TSC ticks or 2^27 polls) runs out:
 * "all N cpus up" and debug-exit 0, or "timeout: only K of N cpus" and debug-exit 1.
 * With more than two CPUs the order of the "cpu N up" lines varies; smp.expected is for 2. */
    .include "lib/common.inc"
    .include "lib/acpi.inc"

    .set TRAMPOLINE, 0x8000          /* must be page-aligned, below 1 MiB */
    .set LAPIC, 0xFEE00000
    .set LAPIC_SVR, 0xF0             /* spurious vector register: bit 8 enables the APIC */
    .set LAPIC_ICR_LO, 0x300
    .set LAPIC_ICR_HI, 0x310
    .set ICR_BUSY, 1 << 12           /* delivery status: send pending */
    .set ICR_INIT_ALL_BUT_SELF, 0x000C4500   /* shorthand 11b, level assert, INIT */
    .set ICR_SIPI_ALL_BUT_SELF, 0x000C4600   /* shorthand 11b, level assert, STARTUP */
    .set MAX_APS, 64
    .set AP_STACK_SIZE, 2048

    .text
    .globl main
main:
    push %rbx
    push %r12
    sub $8, %rsp
    PRINT "smp: boot cpu is cpu "
    mov $1, %eax
    cpuid
    shr $24, %ebx
    mov %ebx, %edi
    call serial_print_dec
    PRINT "\n"
    call acpi_count_cpus
    mov %rax, %r12                   /* CPUs the MADT lists */
    test %rax, %rax
    jnz 1f
    PRINT "smp: no MADT found\n"
    mov $2, %eax
    jmp 9f
1:  PRINT "smp: the MADT lists "
    mov %r12, %rdi
    call serial_print_dec
    PRINT " cpus\n"
    cmp $1, %r12
    je 5f

    /* The trampoline, byte by byte to 0x8000. */
    lea ap_trampoline(%rip), %rsi
    mov $TRAMPOLINE, %edi
    mov $(ap_trampoline_end - ap_trampoline), %ecx
2:  movzbl (%rsi), %eax
    mov %al, (%rdi)
    inc %rsi
    inc %rdi
    dec %ecx
    jnz 2b

    PRINT "smp: sending INIT and STARTUP IPIs\n"
    mov $LAPIC, %ebx
    movl $0x1FF, LAPIC_SVR(%rbx)     /* APIC on, spurious vector 0xFF */
    movl $0, LAPIC_ICR_HI(%rbx)
    movl $ICR_INIT_ALL_BUT_SELF, LAPIC_ICR_LO(%rbx)
    call wait_icr
    lea user_spin(%rip), %rdi        /* the SDM's 10 ms, roughly: a delay at CPL 3 */
    mov $100000, %esi
    call run_user
    movl $(ICR_SIPI_ALL_BUT_SELF | (TRAMPOLINE >> 12)), LAPIC_ICR_LO(%rbx)
    call wait_icr
    lea user_spin(%rip), %rdi
    mov $10000, %esi
    call run_user
    movl $(ICR_SIPI_ALL_BUT_SELF | (TRAMPOLINE >> 12)), LAPIC_ICR_LO(%rbx)
    call wait_icr

    lea user_wait_for_cpus(%rip), %rdi
    mov %r12, %rsi
    call run_user
    cmp %r12, %rax
    jae 5f
    mov %rax, %rbx
    call spin_lock
    PRINT "timeout: only "
    mov %rbx, %rdi
    call serial_print_dec
    PRINT " of "
    mov %r12, %rdi
    call serial_print_dec
    PRINT " cpus\n"
    call spin_unlock
    mov $1, %eax
    jmp 9f

5:  call spin_lock
    PRINT "all "
    mov %r12, %rdi
    call serial_print_dec
    PRINT " cpus up\n"
    call spin_unlock
    xor %eax, %eax
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

/* spin_lock/spin_unlock: one lock around serial output, shared by all CPUs. XCHG with memory
 * is atomic without a LOCK prefix. */
spin_lock:
    mov $1, %eax
1:  xchg %eax, print_lock(%rip)
    test %eax, %eax
    jz 2f
    pause
    jmp 1b
2:  ret
spin_unlock:
    movl $0, print_lock(%rip)
    ret

/* CPL 3: poll cpus_up until it reaches RDI or a bound runs out; returns the last count. */
user_wait_for_cpus:
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r8                    /* start time */
    mov $(1 << 27), %r9d             /* polls left */
    movabs $(1 << 32), %r10          /* TSC ticks allowed */
1:  mov cpus_up(%rip), %eax
    cmp %rdi, %rax
    jae 2f
    pause
    dec %r9d
    jz 2f
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    sub %r8, %rax
    cmp %r10, %rax
    jb 1b
2:  mov cpus_up(%rip), %eax
    ret

/* ---- application processors ---- */

/* Runs at TRAMPOLINE in real mode (CS = TRAMPOLINE >> 4, IP = 0): only position-independent
 * code and absolute addresses computed for TRAMPOLINE. */
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
    mov $1, %eax
    lock xadd %eax, ap_next_slot(%rip)
    cmp $MAX_APS, %eax
    jae 2f                           /* no stack left: count it, stay silent */
    inc %eax
    imul $AP_STACK_SIZE, %eax, %eax
    lea ap_stacks(%rip), %rsp
    add %rax, %rsp
    mov $1, %eax
    cpuid
    shr $24, %ebx                    /* initial APIC ID */
    call spin_lock
    PRINT "cpu "
    mov %ebx, %edi
    call serial_print_dec
    PRINT " up\n"
    lock incl cpus_up(%rip)
    call spin_unlock
1:  cli
    hlt
    jmp 1b
2:  lock incl cpus_up(%rip)
    jmp 1b

    .data
    .balign 4
cpus_up:                             /* the boot CPU counts itself */
    .long 1
ap_next_slot:
    .long 0
print_lock:
    .long 0

    .bss
    .balign 16
ap_stacks:
    .skip MAX_APS * AP_STACK_SIZE
    .text
