/* exceptions: one exception of each class, caught through lib/catch.inc, printed with its
 * vector, error code, the CS it came from and whether the saved RIP is the right one:
 * #DE (DIV by 0 at CPL 3), #UD (UD2), #GP(selector) (DS loaded with a selector past the GDT
 * limit), #NP(selector) (DS loaded with a not-present segment), #SS(selector) (SS loaded with
 * it), #GP(selector) (SS loaded with a DPL 3 segment at CPL 0), #AC (misaligned load, REP MOVSW
 * and PUSH at CPL 3, CR0.AM + EFLAGS.AC), #DB (TF single-step at CPL 3: a trap, RIP after the next
 * instruction; DR6 then), #GP(0) and #SS(0) for non-canonical addresses at CPL 3,
 * #DF (a #PF whose delivery faults again: the stack is
 * not mapped; #DF runs on IST 1; its saved RIP is undefined so it is not checked), and a #PF
 * whose handler maps the page and IRETQs back to the faulting load, which then completes.
 * #TS is not reachable in long mode without task switches (none exist there). #BP, #OF and
 * #BR (INT3, INTO, BOUND) are in exceptions_tcg: PVM fails them (see that guest).
 * debug-exit 0 when every check passed, else the number of failed checks. */
    .include "lib/common.inc"
    .include "lib/catch.inc"

    .set FIX_VA, 0x40000000          /* pd[512]: a 4 KiB table whose page 0 starts not present */
    .set UNMAPPED, 0x100001000       /* PML4[0]'s PDPT has nothing past 4 GiB */
    .set CR0_AM, 1 << 18
    .set RFLAGS_TF, 1 << 8
    .set RFLAGS_AC, 1 << 18

.macro CHECK text, fn, rip
    PRINT "exceptions: \text: "
    lea \fn(%rip), %rdi
    xor %esi, %esi
    call catch_call
    .ifc \rip,0
    xor %edi, %edi
    .else
    lea \rip(%rip), %rdi
    .endif
    call catch_report
    add %eax, %ebx
.endm

    .text
    .globl main
main:
    push %rbx
    push %r12
    xor %ebx, %ebx                   /* failed checks */
    .irp v, 0, 1, 6, 8, 11, 12, 13, 14, 17
    mov $\v, %edi
    call catch_gate
    .endr
    lea df_stack_top(%rip), %rax     /* #DF on IST 1 */
    mov %rax, tss + 0x24(%rip)
    movb $1, idt + 8 * 16 + 4(%rip)

    CHECK "#DE div by 0 at CPL 3", do_de, de_insn
    CHECK "#UD ud2", do_ud, ud_insn
    CHECK "#GP mov ds, selector past the GDT limit", do_gp, gp_insn
    CHECK "#NP mov ds, not-present segment", do_np, np_insn
    CHECK "#SS mov ss, not-present segment", do_ss, ss_insn
    CHECK "#GP mov ss, DPL 3 segment at CPL 0", do_gp_ss, gp_ss_insn
    CHECK "#AC misaligned load at CPL 3", do_ac, ac_insn
    CHECK "#AC misaligned rep movsw at CPL 3", do_ac_movs, ac_movs_insn
    CHECK "#AC push on a misaligned stack at CPL 3", do_ac_push, ac_push_insn
    CHECK "#DB single-step at CPL 3", do_db, db_after
    PRINT "exceptions: DR6 after the single step 0x"
    mov %dr6, %rdi
    mov $8, %esi
    call serial_print_hex
    PRINT "\n"
    CHECK "#GP non-canonical load at CPL 3", do_noncanon, noncanon_insn
    CHECK "#SS non-canonical RBP-based load at CPL 3", do_noncanon_ss, noncanon_ss_insn
    CHECK "#DF #PF on a not-present stack", do_df, 0

    /* #PF fixed by its handler, then IRETQ back to the load */
    lea fix_pt(%rip), %rdi
    xor %ecx, %ecx
1:  movq $0, (%rdi, %rcx, 8)
    inc %ecx
    cmp $512, %ecx
    jne 1b
    lea fix_page(%rip), %rax
    movq $0x600dcafe, (%rax)
    or $(PTE_RW | PTE_US), %rax      /* not present yet */
    mov %rax, (%rdi)
    or $(PTE_P | PTE_RW | PTE_US), %rdi
    lea pd(%rip), %rax
    mov %rdi, 512 * 8(%rax)
    mov %cr3, %rax
    mov %rax, %cr3
    lea fix_pf(%rip), %rax           /* gate 14 -> fix_pf */
    lea idt + 14 * 16(%rip), %rdi
    mov %ax, (%rdi)
    shr $16, %rax
    mov %ax, 6(%rdi)
    shr $16, %rax
    mov %eax, 8(%rdi)
    mov $FIX_VA + 8, %rax
    movq $0, fix_count(%rip)
fix_insn:
    mov -8(%rax), %r12               /* faults once, then completes */
    PRINT "exceptions: #PF fixed, IRETQ back: handler ran "
    mov fix_count(%rip), %rdi
    call serial_print_dec
    PRINT " time(s), error 0x"
    mov fix_error(%rip), %rdi
    mov $4, %esi
    call serial_print_hex
    PRINT ", cr2 0x"
    mov fix_cr2(%rip), %rdi
    mov $8, %esi
    call serial_print_hex
    PRINT ", rip "
    lea fix_insn(%rip), %rax
    cmp fix_rip(%rip), %rax
    jne 2f
    PRINT "ok"
    jmp 3f
2:  PRINT "WRONG"
    inc %ebx
3:  PRINT ", value 0x"
    mov %r12, %rdi
    mov $8, %esi
    call serial_print_hex
    PRINT "\n"
    cmpq $1, fix_count(%rip)
    setne %al
    movzbl %al, %eax
    add %eax, %ebx
    cmp $0x600dcafe, %r12
    setne %al
    add %eax, %ebx

    PRINT "exceptions: "
    mov %ebx, %edi
    call serial_print_dec
    PRINT " failed\n"
    mov %ebx, %eax
    pop %r12
    pop %rbx
    ret

/* #PF handler: count, record, make the page present, return to the faulting instruction. */
fix_pf:
    push %rax
    push %rdi
    incq fix_count(%rip)
    mov 16(%rsp), %rax
    mov %rax, fix_error(%rip)
    mov 24(%rsp), %rax
    mov %rax, fix_rip(%rip)
    mov %cr2, %rax
    mov %rax, fix_cr2(%rip)
    lea fix_pt(%rip), %rdi
    orq $PTE_P, (%rdi)
    invlpg (%rax)
    pop %rdi
    pop %rax
    add $8, %rsp                     /* the error code */
    iretq

do_de:
    lea user_de(%rip), %rdi
    jmp run_user
user_de:                             /* CPL 3 */
    xor %ecx, %ecx
    mov $1, %eax
    xor %edx, %edx
de_insn:
    div %ecx
    ret

do_ud:
ud_insn:
    ud2
    ret

do_gp:
    mov $0x80, %eax
gp_insn:
    mov %ax, %ds
    ret

/* gdt entry 0x18 (UCODE32, unused: SYSRETQ only uses 0x20 and 0x28) becomes a not-present
 * data segment for #NP and #SS, and is put back afterwards. */
do_np:
    movabs $0x00CF13000000FFFF, %rax
    xchg %rax, gdt + 0x18(%rip)
    mov %rax, saved_desc(%rip)
    mov $0x18, %eax
np_insn:
    mov %ax, %ds
    ret
do_ss:
    mov $0x18, %eax
ss_insn:
    mov %ax, %ss
    ret
do_gp_ss:
    mov saved_desc(%rip), %rax       /* UCODE32 back as it was */
    mov %rax, gdt + 0x18(%rip)
    mov $UDATA, %eax                 /* RPL 0 but DPL 3: SS needs DPL = CPL */
gp_ss_insn:
    mov %ax, %ss
    ret

do_ac:
    mov %cr0, %rax
    or $CR0_AM, %eax
    mov %rax, %cr0
    lea user_ac(%rip), %rdi
    call run_user
    ret                              /* not reached when #AC is raised */
user_ac:                             /* CPL 3 */
    pushf
    orl $RFLAGS_AC, (%rsp)
    popf
    lea ac_data(%rip), %rax
ac_insn:
    mov 1(%rax), %ecx
    ret

do_ac_movs:
    lea user_ac_movs(%rip), %rdi
    call run_user
    ret
user_ac_movs:                        /* CPL 3; CR0.AM is still set */
    pushf
    orl $RFLAGS_AC, (%rsp)
    popf
    lea ac_data + 1(%rip), %rsi
    lea ac_data + 8(%rip), %rdi
    mov $2, %ecx
ac_movs_insn:
    rep movsw
    ret

do_ac_push:
    lea user_ac_push(%rip), %rdi
    call run_user
    ret
user_ac_push:                        /* CPL 3 */
    pushf
    orl $RFLAGS_AC, (%rsp)
    popf
    mov %rsp, %rdx
    sub $3, %rsp
ac_push_insn:
    push %rax
    mov %rdx, %rsp
    ret

do_db:
    lea user_db(%rip), %rdi
    jmp run_user
user_db:                             /* CPL 3 */
    pushf
    orl $RFLAGS_TF, (%rsp)
    popf
    xor %eax, %eax                   /* the trap comes after this instruction */
db_after:
    nop
    ret

do_noncanon:
    lea user_noncanon(%rip), %rdi
    jmp run_user
user_noncanon:                       /* CPL 3 */
    movabs $0x0000800000000000, %rax
noncanon_insn:
    mov (%rax), %rcx
    ret

do_noncanon_ss:
    lea user_noncanon_ss(%rip), %rdi
    jmp run_user
user_noncanon_ss:                    /* CPL 3 */
    movabs $0x0000800000000000, %rbp
noncanon_ss_insn:
    mov 8(%rbp), %rcx                /* RBP-based: the stack segment */
    ret

do_df:
    mov $UNMAPPED, %rsp
df_insn:
    push $0
    ret

    .data
    .balign 8
ac_data:
    .quad 0, 0, 0
saved_desc:
    .quad 0
fix_count:
    .quad 0
fix_error:
    .quad 0
fix_rip:
    .quad 0
fix_cr2:
    .quad 0

    .bss
    .balign 4096
fix_pt:
    .skip 4096
fix_page:
    .skip 4096
df_stack:
    .skip 4096
df_stack_top:
    .text
