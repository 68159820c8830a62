/* gates: privilege changes through gates and IRETQ. gates_tcg.S assembles this file with
 * GATES_TCG defined, which adds the parts /dev/kvm (PVM) cannot run (1 and 3).
 * 1. (tcg only) A far CALL from CPL 3 through a 64-bit call gate (DPL 3, in a copy of the GDT with room
 *    for it) to CPL 0 code: it sees CS = KCODE64, its stack is the TSS's RSP0 holding the
 *    caller's SS:RSP and CS:RIP (64-bit slots), and LRETQ takes it back to CPL 3. Under PVM
 *    the LCALL raises #UD at CPL 3 (measured: "unexpected exception 6 at RIP <the lcall>"):
 *    PVM runs guest CPL 3 code natively on the host's GDT, where the gate does not exist.
 * 2. IRETQ from CPL 0 to CPL 3 code (a hand-built frame), which records its CS and SS and
 *    executes HLT: #GP(0) at CPL 3 brings it back through the IDT (lib/catch.inc).
 * 3. (tcg only) SYSENTER from 64-bit CPL 3 and SYSEXIT (REX.W) back: CS/SS at the entry are
 *    SYSENTER_CS and +8, back at CPL 3 SYSENTER_CS + 32 and + 40 (RPL 3). Intel semantics, as
 *    kemu's CPUID says GenuineIntel; AMD CPUs (this host) raise #UD for SYSENTER in long mode.
 * Not here: a 32-bit call gate with a parameter count cannot exist in long mode (every call
 * gate is a 64-bit one there and the count is ignored); SYSCALL/SYSRET: the `syscall` guest
 * (tcg only, PVM breaks SYSCALL). */
    .include "lib/common.inc"
    .include "lib/catch.inc"

    .set NGDT, (gdt_end - gdt) / 8
    .set GATE_SEL, NGDT * 8          /* the call gate, after the boot GDT's entries */
    .set MSR_SYSENTER_CS, 0x174
    .set MSR_SYSENTER_ESP, 0x175
    .set MSR_SYSENTER_EIP, 0x176

    .text
    .globl main
main:
    push %rbx
    push %r12
    xor %ebx, %ebx
    mov $13, %edi
    call catch_gate

    .ifdef GATES_TCG
    lea gdt(%rip), %rsi              /* copy the GDT (busy TSS included), add the gate */
    lea gdt2(%rip), %rdi
    xor %ecx, %ecx
1:  mov (%rsi, %rcx, 8), %rax
    mov %rax, (%rdi, %rcx, 8)
    inc %ecx
    cmp $NGDT, %ecx
    jne 1b
    lea gate_target(%rip), %rax      /* 64-bit call gate: offset, selector, type 0xC, DPL 3 */
    mov %ax, GATE_SEL(%rdi)
    movw $KCODE64, GATE_SEL + 2(%rdi)
    movw $0xEC00, GATE_SEL + 4(%rdi)
    shr $16, %rax
    mov %ax, GATE_SEL + 6(%rdi)
    shr $16, %rax
    mov %eax, GATE_SEL + 8(%rdi)
    movl $0, GATE_SEL + 12(%rdi)
    lgdt gdt2_ptr(%rip)

    PRINT "gates: far call through a 64-bit call gate from CPL 3\n"
    lea user_call(%rip), %rdi
    xor %esi, %esi
    call run_user
    PRINT "gates: in the gate's target: CS 0x"
    mov in_cs(%rip), %rdi
    mov $2, %esi
    call serial_print_hex
    PRINT ", on RSP0 "
    lea trap_stack_top - 32(%rip), %rax
    cmp in_rsp(%rip), %rax
    je 2f
    inc %ebx
    PRINT "NO, "
2:  PRINT "pushed CS 0x"
    mov in_frame + 8(%rip), %rdi
    mov $2, %esi
    call serial_print_hex
    PRINT " SS 0x"
    mov in_frame + 24(%rip), %rdi
    mov $2, %esi
    call serial_print_hex
    PRINT ", RIP "
    lea after_lcall(%rip), %rax
    cmp in_frame(%rip), %rax
    je 3f
    inc %ebx
    PRINT "WRONG"
    jmp 4f
3:  PRINT "ok"
4:  PRINT "\ngates: back at CPL 3 after LRETQ: CS 0x"
    mov back_cs(%rip), %rdi
    mov $2, %esi
    call serial_print_hex
    PRINT " SS 0x"
    mov back_ss(%rip), %rdi
    mov $2, %esi
    call serial_print_hex
    PRINT "\n"


    PRINT "gates: SYSENTER from CPL 3: "
    mov $MSR_SYSENTER_CS, %ecx
    mov $KCODE64, %eax
    xor %edx, %edx
    wrmsr
    mov $MSR_SYSENTER_ESP, %ecx
    lea sysenter_stack_top(%rip), %rax
    mov %rax, %rdx
    shr $32, %rdx
    wrmsr
    mov $MSR_SYSENTER_EIP, %ecx
    lea sysenter_entry(%rip), %rax
    mov %rax, %rdx
    shr $32, %rdx
    wrmsr
    lea user_sysenter(%rip), %rdi
    xor %esi, %esi
    call run_user
    PRINT "entry CS 0x"
    mov se_cs(%rip), %rdi
    mov $2, %esi
    call serial_print_hex
    PRINT " SS 0x"
    mov se_ss(%rip), %rdi
    mov $2, %esi
    call serial_print_hex
    PRINT " RSP "
    lea sysenter_stack_top(%rip), %rax
    cmp se_rsp(%rip), %rax
    je 5f
    inc %ebx
    PRINT "WRONG"
    jmp 6f
5:  PRINT "ok"
6:  PRINT ", after SYSEXIT CS 0x"
    mov sx_cs(%rip), %rdi
    mov $2, %esi
    call serial_print_hex
    PRINT " SS 0x"
    mov sx_ss(%rip), %rdi
    mov $2, %esi
    call serial_print_hex
    PRINT "\n"
    .endif

    PRINT "gates: IRETQ to CPL 3: "
    lea do_iret(%rip), %rdi
    xor %esi, %esi
    call catch_call
    PRINT "CS.RPL "                  /* not the selectors: PVM shows the host's 0x33/0x2b */
    mov iret_cs(%rip), %rdi
    and $3, %edi
    call serial_print_dec
    PRINT " SS.RPL "
    mov iret_ss(%rip), %rdi
    and $3, %edi
    call serial_print_dec
    PRINT ", then HLT: "
    lea iret_hlt(%rip), %rdi
    call catch_report
    add %eax, %ebx

    PRINT "gates: "
    mov %ebx, %edi
    call serial_print_dec
    PRINT " failed\n"
    mov %ebx, %eax
    pop %r12
    pop %rbx
    ret

    .ifdef GATES_TCG
user_sysenter:                       /* CPL 3 */
    mov %rsp, %rcx                   /* SYSEXIT: RSP = RCX, RIP = RDX */
    lea 1f(%rip), %rdx
    sysenter
1:  mov %cs, %eax
    mov %rax, sx_cs(%rip)
    mov %ss, %eax
    mov %rax, sx_ss(%rip)
    ret

sysenter_entry:                      /* CPL 0 */
    mov %cs, %eax
    mov %rax, se_cs(%rip)
    mov %ss, %eax
    mov %rax, se_ss(%rip)
    mov %rsp, se_rsp(%rip)
    sysexitq

user_call:                           /* CPL 3 */
    lcall *gate_far(%rip)
after_lcall:
    mov %cs, %eax
    mov %rax, back_cs(%rip)
    mov %ss, %eax
    mov %rax, back_ss(%rip)
    ret

gate_target:                         /* CPL 0, on RSP0: RIP, CS, RSP, SS */
    mov %cs, %eax
    mov %rax, in_cs(%rip)
    mov %rsp, in_rsp(%rip)
    mov (%rsp), %rax
    mov %rax, in_frame(%rip)
    mov 8(%rsp), %rax
    mov %rax, in_frame + 8(%rip)
    mov 24(%rsp), %rax
    mov %rax, in_frame + 24(%rip)
    lretq
    .endif

do_iret:
    mov $(UDATA | 3), %eax
    push %rax                        /* SS */
    lea user_stack_top - 64(%rip), %rax
    push %rax                        /* RSP */
    pushq $2                         /* RFLAGS */
    pushq $(UCODE64 | 3)             /* CS */
    lea user_iret(%rip), %rax
    push %rax                        /* RIP */
    iretq
user_iret:                           /* CPL 3 */
    mov %cs, %eax
    mov %rax, iret_cs(%rip)
    mov %ss, %eax
    mov %rax, iret_ss(%rip)
iret_hlt:
    hlt

    .data
    .balign 16
gdt2:
    .fill 16, 8, 0
gdt2_end:
    .balign 8
gdt2_ptr:
    .word GATE_SEL + 16 - 1
    .quad gdt2
gate_far:                            /* the offset is ignored for a gate */
    .long 0
    .word GATE_SEL | 3
    .balign 8
in_cs:    .quad 0
in_rsp:   .quad 0
in_frame: .quad 0, 0, 0, 0
back_cs:  .quad 0
back_ss:  .quad 0
iret_cs:  .quad 0
iret_ss:  .quad 0
se_cs:    .quad 0
se_ss:    .quad 0
se_rsp:   .quad 0
sx_cs:    .quad 0
sx_ss:    .quad 0

    .bss
    .balign 16
sysenter_stack:
    .skip 1024
sysenter_stack_top:
    .text
