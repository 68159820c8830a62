/* syscall: checks SYSRETQ and SYSCALL themselves (the other guests come back from CPL 3 through
 * an exception, see user.inc). At CPL 3 the user code records CS, SS and RFLAGS as SYSRETQ
 * left them, sets DF and CF, and makes a SYSCALL to this guest's own LSTAR entry, which records
 * RCX (must be the address after the SYSCALL), R11 (the user RFLAGS, DF and CF set), CS and SS
 * (KCODE64, KDATA) and its own RFLAGS (FMASK must have cleared DF), then returns as
 * user.inc's SYSCALL path does. Prints each value; debug-exit 0 if all are right, else 1.
 * Known: fails under PVM, where a SYSCALL from CPL 3 may arrive still at CPL 3 (README.md);
 * the entry then goes back through user.inc's HLT #GP so the values still get printed. */
    .include "lib/common.inc"

    .set RFLAGS_CF, 1 << 0
    .set RFLAGS_IF, 1 << 9
    .set RFLAGS_DF, 1 << 10

    .text
    .globl main
main:
    push %rbx
    mov $MSR_LSTAR, %ecx             /* our own entry, which then joins user.inc's */
    lea checking_entry(%rip), %rax
    mov %rax, %rdx
    shr $32, %rdx
    wrmsr
    PRINT "syscall: SYSRETQ to CPL 3\n"
    lea user_main(%rip), %rdi
    mov $0x1234, %esi
    call run_user_syscall
    mov %rax, %rbx
    xor %r12d, %r12d                 /* failures */

    PRINT "syscall: at CPL 3: CS=0x"
    mov user_cs(%rip), %rdi
    mov $2, %esi
    call serial_print_hex
    PRINT " SS=0x"
    mov user_ss(%rip), %rdi
    mov $2, %esi
    call serial_print_hex
    PRINT " IF="
    mov user_rflags(%rip), %rdi
    shr $9, %rdi
    and $1, %edi
    call serial_print_dec
    PRINT "\n"
    cmpq $(UCODE64 | 3), user_cs(%rip)
    setne %al
    add %al, %r12b
    cmpq $(UDATA | 3), user_ss(%rip)
    setne %al
    add %al, %r12b

    PRINT "syscall: at the SYSCALL entry: CS=0x"
    mov entry_cs(%rip), %rdi
    mov $2, %esi
    call serial_print_hex
    PRINT " SS=0x"
    mov entry_ss(%rip), %rdi
    mov $2, %esi
    call serial_print_hex
    PRINT " RCX="
    lea after_syscall(%rip), %rax
    cmp %rax, entry_rcx(%rip)
    jne 1f
    PRINT "the return address"
    jmp 2f
1:  PRINT "WRONG"
    inc %r12d
2:  PRINT " R11.DF="
    mov entry_r11(%rip), %rdi
    shr $10, %rdi
    and $1, %edi
    call serial_print_dec
    PRINT " R11.CF="
    mov entry_r11(%rip), %rdi
    and $1, %edi
    call serial_print_dec
    PRINT " DF="
    mov entry_rflags(%rip), %rdi
    shr $10, %rdi
    and $1, %edi
    call serial_print_dec
    PRINT "\n"
    cmpq $KCODE64, entry_cs(%rip)
    setne %al
    add %al, %r12b
    cmpq $KDATA, entry_ss(%rip)
    setne %al
    add %al, %r12b
    mov entry_r11(%rip), %rax
    and $(RFLAGS_DF | RFLAGS_CF), %eax
    cmp $(RFLAGS_DF | RFLAGS_CF), %eax
    setne %al
    add %al, %r12b
    testq $RFLAGS_DF, entry_rflags(%rip)
    setnz %al
    add %al, %r12b

    PRINT "syscall: the user function returned 0x"
    mov %rbx, %rdi
    mov $4, %esi
    call serial_print_hex
    PRINT "\n"
    cmp $0x1235, %rbx
    setne %al
    add %al, %r12b

    test %r12d, %r12d
    jnz 3f
    PRINT "syscall: all checks passed\n"
    xor %eax, %eax
    pop %rbx
    ret
3:  PRINT "syscall: FAILED\n"
    mov $1, %eax
    pop %rbx
    ret

/* CPL 3. */
user_main:
    xor %eax, %eax
    mov %cs, %ax
    mov %rax, user_cs(%rip)
    mov %ss, %ax
    mov %rax, user_ss(%rip)
    pushfq
    popq user_rflags(%rip)
    lea 1(%rdi), %rdi                /* the value the kernel gets back */
    std
    stc
    syscall
after_syscall:                       /* never reached: the entry returns to run_user's caller */
    hlt

/* CPL 0, on the user stack; RDI = the value for run_user's caller. */
checking_entry:
    mov %rcx, entry_rcx(%rip)
    mov %r11, entry_r11(%rip)
    pushfq
    popq entry_rflags(%rip)
    xor %eax, %eax
    mov %cs, %ax
    mov %rax, entry_cs(%rip)
    mov %ss, %ax
    mov %rax, entry_ss(%rip)
    cld
    testb $3, entry_cs(%rip)
    jnz user_trap_hlt                /* still at CPL 3 (PVM): back through the #GP to report */
    jmp user_resume

    .data
    .balign 8
user_cs: .quad 0
user_ss: .quad 0
user_rflags: .quad 0
entry_rcx: .quad 0
entry_r11: .quad 0
entry_rflags: .quad 0
entry_cs: .quad 0
entry_ss: .quad 0
