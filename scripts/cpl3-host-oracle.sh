#!/usr/bin/env bash
# cpl3-host-oracle.sh: run cpl3's workload (tests/guest-images/lib/workload.inc) natively on the
# host CPU and print the checksum line the cpl3 guest prints, so tests/guest-images/cpl3.expected
# is checked against real hardware, not against an emulator. Needs binutils and Linux x86-64.
# Usage: scripts/cpl3-host-oracle.sh   (prints "cpl3: checksum 0x...")
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SEED=$(awk '/\.set WORK_SEED/ { print $3 }' "$ROOT/tests/guest-images/cpl3.S")
cat >"$WORK/oracle.S" <<ASM
    .include "lib/workload.inc"
    .text
    .globl _start
_start:
    movabs \$$SEED, %rdi
    call workload
    lea hex_end(%rip), %rdi          /* 16 hex digits, last one first */
    lea digits(%rip), %r9
    mov \$16, %ecx
1:  mov %eax, %edx
    and \$0xf, %edx
    movzbl (%r9,%rdx), %edx
    dec %rdi
    mov %dl, (%rdi)
    shr \$4, %rax
    dec %ecx
    jnz 1b
    mov \$1, %eax                     /* write(1, line, len) */
    mov \$1, %edi
    lea line(%rip), %rsi
    mov \$(line_end - line), %edx
    syscall
    mov \$60, %eax                    /* exit(0) */
    xor %edi, %edi
    syscall
    .data
line:
    .ascii "cpl3: checksum 0x"
hex:
    .ascii "0000000000000000"
hex_end:
    .ascii "\n"
line_end:
digits:
    .ascii "0123456789abcdef"
ASM
as --64 -I "$ROOT/tests/guest-images" -o "$WORK/oracle.o" "$WORK/oracle.S"
ld -o "$WORK/oracle" "$WORK/oracle.o"
"$WORK/oracle"
