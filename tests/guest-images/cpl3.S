/* cpl3: runs an integer workload at CPL 3 (lib/workload.inc), comes back to CPL 0 (run_user:
 * the #GP of a HLT, robust under PVM where a SYSCALL after a long CPL 3 stretch is not) and
 * prints its checksum. The host-CPU oracle: cpl3.expected holds what the real CPU computes
 * (scripts/cpl3-host-oracle.sh runs the same workload natively). Also prints the CPL the
 * workload saw, so a guest that never left CPL 0 cannot pass. */
    .include "lib/common.inc"
    .include "lib/workload.inc"

    .set WORK_SEED, 0x2545F4914F6CDD1D

    .text
    .globl main
main:
    push %rbx
    PRINT "cpl3: running the integer workload at CPL 3\n"
    lea user_main(%rip), %rdi
    movabs $WORK_SEED, %rsi
    call run_user
    mov %rax, %rbx
    PRINT "cpl3: back at CPL 0; the workload ran at CPL "
    mov user_cpl(%rip), %edi
    call serial_print_dec
    PRINT "\ncpl3: checksum 0x"
    mov %rbx, %rdi
    mov $16, %esi
    call serial_print_hex
    PRINT "\n"
    xor %eax, %eax
    cmpl $3, user_cpl(%rip)
    je 1f
    mov $1, %eax                     /* never reached CPL 3: fail */
1:  pop %rbx
    ret

user_main:                           /* CPL 3 */
    mov %cs, %eax
    and $3, %eax
    mov %eax, user_cpl(%rip)
    jmp workload

    .data
    .balign 4
user_cpl:
    .long 0xff
