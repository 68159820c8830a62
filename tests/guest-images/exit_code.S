/* exit_code: prints nothing and ends with debug-exit value 0x2a, so the emulator must exit
 * with status (0x2a << 1) | 1 = 85. Tests that the exit status reaches the host process. */
    .include "lib/common.inc"

    .text
    .globl main
main:
    mov $0x2a, %eax
    ret
