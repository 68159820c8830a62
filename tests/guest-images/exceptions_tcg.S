/* exceptions_tcg: the exception classes /dev/kvm (PVM) cannot run, for the software CPU only.
 * #BP: INT3 at CPL 0 (a trap: RIP after it). PVM fails INT n/INT3 (README.md).
 * #OF: INTO with OF=1, in compatibility mode at CPL 3 (INTO is invalid in 64-bit mode), through
 *   a DPL 3 gate (with a DPL 0 gate it is #GP(0x22), as for INT n).
 * #BR: BOUND with an index outside the bounds, in compatibility mode at CPL 3. Under PVM this
 *   raises #UD instead (vector 6, measured): PVM runs guest CPL 3 code with the host's 64-bit
 *   user CS, where 0x62 (BOUND) is the EVEX prefix; a real CPU in compatibility mode raises
 *   #BR. At CPL 0 PVM cannot emulate BOUND at all (KVM internal error, emulation failure).
 * #GP(vector * 8 + 2): INT $0x40 at CPL 3 through a DPL 0 gate.
 * debug-exit 0 when every check passed, else the number of failed checks. */
    .include "lib/common.inc"
    .include "lib/catch.inc"

.macro CHECK text, fn, rip
    PRINT "exceptions_tcg: \text: "
    lea \fn(%rip), %rdi
    xor %esi, %esi
    call catch_call
    lea \rip(%rip), %rdi
    call catch_report
    add %eax, %ebx
.endm

    .text
    .globl main
main:
    push %rbx
    xor %ebx, %ebx
    .irp v, 3, 4, 5, 13
    mov $\v, %edi
    call catch_gate
    .endr
    movb $0xEE, idt + 4 * 16 + 5(%rip)   /* gate 4 DPL 3: INTO checks it like INT n */
    mov $(UDATA | 3), %eax           /* compatibility mode uses DS's base and limit */
    mov %ax, %ds
    mov %ax, %es

    CHECK "#BP int3", do_bp, bp_after
    CHECK "#OF into in compatibility mode at CPL 3", do_of, of_after
    CHECK "#BR bound in compatibility mode at CPL 3", do_br, br_insn
    CHECK "#GP int 0x40 at CPL 3 through a DPL 0 gate", do_int, int_insn

    PRINT "exceptions_tcg: "
    mov %ebx, %edi
    call serial_print_dec
    PRINT " failed\n"
    mov %ebx, %eax
    pop %rbx
    ret

do_bp:
    int3
bp_after:
    ret

do_of:
    lea user_of(%rip), %rdi
    jmp run_user
user_of:                             /* CPL 3, 64-bit: on to 32-bit UCODE32 */
    ljmpl *of_far(%rip)
    .code32
of_code32:
    mov $0x7fffffff, %eax
    add $1, %eax                     /* OF = 1 */
    into
of_after:
    ud2
    .code64

do_br:
    lea user_br(%rip), %rdi
    jmp run_user
user_br:
    ljmpl *br_far(%rip)
    .code32
br_code32:
    mov $100, %eax
br_insn:
    bound %eax, br_bounds            /* 100 is outside [0, 10] */
    ud2
    .code64

do_int:
    lea user_int(%rip), %rdi
    jmp run_user
user_int:
int_insn:
    int $0x40
    ret

    .data
    .balign 8
of_far:
    .long of_code32
    .word UCODE32 | 3
    .balign 8
br_far:
    .long br_code32
    .word UCODE32 | 3
    .balign 8
br_bounds:
    .long 0, 10
    .text
