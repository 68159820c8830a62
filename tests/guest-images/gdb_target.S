/* gdb_target: a guest for the gdbstub tests. `gdb_here` is reached with known register values
 * (RBX = 0x1122334455667788, ECX = 0x4b454d55) and `gdb_bytes` holds DE AD BE EF; the test sets
 * a breakpoint at gdb_here, checks them, steps once (RBX + 1) and continues to the end.
 * While the byte `gdb_spin` is nonzero (0 as built; a debugger writes it) the guest spins at
 * `gdb_spin_loop` first, so a test can interrupt it and let it go by writing 0 back. */
    .include "lib/common.inc"

    .data
    .globl gdb_bytes
gdb_bytes:
    .byte 0xde, 0xad, 0xbe, 0xef
    .globl gdb_spin
gdb_spin:
    .byte 0

    .text
    .globl main
    .globl gdb_here
    .globl gdb_after
    .globl gdb_spin_loop
main:
    push %rbx                       /* callee-saved */
gdb_spin_loop:
    cmpb $0, gdb_spin(%rip)
    jne gdb_spin_loop
    movabs $0x1122334455667788, %rbx
    mov $0x4b454d55, %ecx
gdb_here:
    add $1, %rbx
gdb_after:
    nop
    PRINT "gdb target done\n"
    pop %rbx
    xor %eax, %eax
    ret
