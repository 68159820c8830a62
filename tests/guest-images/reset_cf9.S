/* reset_cf9: asks for a machine reset through the reset control register at port 0xCF9
 * (value 0x06: hard reset), the register the ACPI FADT names. With -no-reboot the emulator
 * exits with status 0; if the write does nothing, the guest fails with debug-exit 1. */
    .include "lib/common.inc"

    .text
    .globl main
main:
    sub $8, %rsp
    PRINT "reset_cf9: writing 0x06 to port 0xcf9\n"
    mov $0x06, %al
    mov $0xcf9, %dx
    out %al, %dx
    PRINT "reset_cf9: still running after the reset write\n"
    add $8, %rsp
    mov $1, %eax
    ret
