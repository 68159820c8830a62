/* gdb_target: a guest for the gdbstub tests. `gdb_here` is reached with known register values
 * (RBX = 0x1122334455667788, ECX = 0x4b454d55) and `gdb_bytes` holds DE AD BE EF; the test sets
 * a breakpoint at gdb_here, checks them, steps once (RBX + 1) and continues to the end. */
    .include "lib/common.inc"

    .data
    .globl gdb_bytes
gdb_bytes:
    .byte 0xde, 0xad, 0xbe, 0xef

    .text
    .globl main
    .globl gdb_here
    .globl gdb_after
main:
    push %rbx                       /* callee-saved */
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
