/* pio_bench: the port-I/O round-trip benchmark. 200000 byte OUTs to port 0x80 (the POST
 * diagnostic port, which every PC ignores) at CPL 0 in 64-bit mode, then debug-exit 0.
 * Benchmarks divide the wall time by PIO_COUNT. Prints nothing, so the serial port's own
 * I/O does not disturb the count. */
    .include "lib/common.inc"

    .set PIO_COUNT, 200000

    .text
    .globl main
main:
    mov $PIO_COUNT, %ecx
    xor %eax, %eax
1:  out %al, $0x80
    dec %ecx
    jnz 1b
    xor %eax, %eax
    ret
