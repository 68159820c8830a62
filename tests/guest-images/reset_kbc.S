/* reset_kbc: asks for a machine reset through the i8042 (command 0xFE pulses the CPU reset
 * line). With -no-reboot the emulator exits with status 0; if the write does nothing, the guest
 * says so and fails with debug-exit 1. */
    .include "lib/common.inc"

    .text
    .globl main
main:
    sub $8, %rsp
    PRINT "reset_kbc: pulsing the reset line through the i8042\n"
    mov $0xfe, %al
    out %al, $0x64
    PRINT "reset_kbc: still running after the reset command\n"
    add $8, %rsp
    mov $1, %eax
    ret
