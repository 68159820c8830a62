/* hello: the smallest guest. Multiboot -> long mode -> one line on COM1 -> debug-exit 0.
 * Also built as hello.elf (an ELF32 multiboot kernel without the a.out kludge) to test the
 * ELF loader path. */
    .include "lib/common.inc"

    .text
    .globl main
main:
    sub $8, %rsp
    PRINT "hello from long mode\n"
    add $8, %rsp
    xor %eax, %eax
    ret
