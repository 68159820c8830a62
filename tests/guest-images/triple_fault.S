/* triple_fault: loads an empty IDT and executes UD2. #UD cannot be delivered, nor can the
 * #GP and #DF that follow: the CPU shuts down. The emulator reports the triple fault; with
 * -no-reboot it then exits (status 0, as QEMU does). */
    .include "lib/common.inc"

    .text
    .globl main
main:
    sub $8, %rsp
    PRINT "triple_fault: empty IDT, then ud2\n"
    lidt empty_idt(%rip)
    ud2
    add $8, %rsp
    mov $1, %eax
    ret

    .data
    .balign 16
empty_idt:
    .word 0
    .quad 0
