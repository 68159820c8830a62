/* echo: host input reaches the guest. Reads COM1 (polling LSR bit 0) up to a newline and
 * prints the line back as "echo: LINE", then debug-exit 0. Needs input on kemu's stdin. */
    .include "lib/common.inc"

    .text
    .globl main
main:
    push %rbx
    PRINT "echo: type a line\n"
    lea line(%rip), %rbx
1:  mov $0x3fd, %edx
2:  in %dx, %al
    test $1, %al
    jz 2b
    mov $0x3f8, %edx
    in %dx, %al
    cmp $'\n', %al
    je 3f
    cmp $'\r', %al
    je 3f
    mov %al, (%rbx)
    inc %rbx
    lea line_end(%rip), %rax
    cmp %rax, %rbx
    jb 1b
3:  movb $0, (%rbx)
    PRINT "echo: "
    lea line(%rip), %rdi
    call serial_puts
    PRINT "\n"
    pop %rbx
    xor %eax, %eax
    ret

    .data
line:
    .skip 64
line_end:
    .byte 0
