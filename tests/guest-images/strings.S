/* strings: the string instructions at CPL 3, each result hashed (FNV-1a, 64-bit) and printed.
 * REP MOVSB/W/D/Q forward and backward (DF=1), overlapping copies (destination 1 and 3 bytes
 * above the source, where the copy must behave element by element), a copy crossing pages,
 * REP STOSB/STOSQ, REPE CMPSB stopping at a difference, REPNE SCASB finding a byte, LODSB/LODSQ,
 * and REP MOVSB/STOSB with 32-bit address size (ECX counts: RCX's upper half is set and must be
 * ignored), REP with RCX = 0, SCAS/CMPS of each element size, REP LODSB and an FS source
 * override. Besides each hash it prints the registers the instruction leaves (RCX, and RSI/RDI
 * as offsets into their buffers). The expected output is the host CPU's (under KVM). */
    .include "lib/common.inc"

    .set BUF, 0x4000                 /* each buffer is 16 KiB */
    .set NRES, 64

    .text
    .globl main
main:
    push %rbx
    push %r12
    mov $0xC0000100, %ecx            /* FS base = dst, for the FS-override copy */
    lea dst(%rip), %rax
    mov %rax, %rdx
    shr $32, %rdx
    wrmsr
    PRINT "strings: running at CPL 3\n"
    lea user_strings(%rip), %rdi
    xor %esi, %esi
    call run_user
    lea results(%rip), %rbx
    lea names(%rip), %r12
1:  cmpb $0, (%r12)
    je 3f
    PRINT "strings: "
    mov %r12, %rdi
    call serial_puts
2:  cmpb $0, (%r12)                  /* skip past the name */
    lea 1(%r12), %r12
    jne 2b
    PRINT " 0x"
    mov (%rbx), %rdi
    mov $16, %esi
    call serial_print_hex
    PRINT "\n"
    add $8, %rbx
    jmp 1b
3:  xor %eax, %eax
    pop %r12
    pop %rbx
    ret

/* hash(RDI = buffer, RSI = length) -> RAX; keeps every register but RAX, RCX, RDX. */
hash:
    movabs $0xcbf29ce484222325, %rax
    movabs $0x100000001b3, %rcx
    test %rsi, %rsi
    jz 2f
    push %rdi
    push %rsi
1:  movzbl (%rdi), %edx
    xor %rdx, %rax
    imul %rcx, %rax
    inc %rdi
    dec %rsi
    jnz 1b
    pop %rsi
    pop %rdi
2:  ret

/* R15 points at the next result slot. */
.macro SAVE reg
    mov \reg, (%r15)
    add $8, %r15
.endm

/* Fill src with a pattern and dst with 0xee. */
reset:
    lea src(%rip), %rdi
    xor %ecx, %ecx
1:  mov %ecx, %eax
    imul $7, %eax, %eax
    mov %ecx, %edx
    shr $8, %edx
    add %edx, %eax
    mov %al, (%rdi, %rcx)
    inc %ecx
    cmp $BUF, %ecx
    jne 1b
    lea dst(%rip), %rdi
    mov $0xee, %al
    mov $BUF, %ecx
2:  mov %al, (%rdi)
    inc %rdi
    dec %ecx
    jnz 2b
    ret

.macro HASH_DST
    lea dst(%rip), %rdi
    mov $BUF, %esi
    call hash
    SAVE %rax
.endm
.macro HASH_SRC
    lea src(%rip), %rdi
    mov $BUF, %esi
    call hash
    SAVE %rax
.endm

user_strings:                        /* CPL 3 */
    push %r15
    push %r12
    push %r13
    lea results(%rip), %r15
    lea src(%rip), %r12
    lea dst(%rip), %r13

    /* forward copies of each element size */
    call reset
    lea 5(%r12), %rsi
    lea 3(%r13), %rdi
    mov $1001, %ecx
    rep movsb
    mov %rdi, %rax
    sub %r13, %rax
    SAVE %rax
    HASH_DST
    lea 2(%r12), %rsi
    lea 0x800(%r13), %rdi
    mov $301, %ecx
    rep movsw
    mov $77, %ecx
    rep movsl
    mov $55, %ecx
    rep movsq
    mov %rsi, %rax
    sub %r12, %rax
    SAVE %rax
    HASH_DST

    /* backward (DF=1) */
    call reset
    std
    lea 2000(%r12), %rsi
    lea 3000(%r13), %rdi
    mov $999, %ecx
    rep movsb
    mov %rdi, %rdx
    lea 0x1800(%r12), %rsi
    lea 0x1000(%r13), %rdi
    mov $100, %ecx
    rep movsq
    lea 0x2802(%r12), %rsi
    lea 0x2001(%r13), %rdi
    mov $33, %ecx
    rep movsw
    mov $21, %ecx
    rep movsl
    cld
    sub %r13, %rdx
    SAVE %rdx
    mov %rdi, %rax
    sub %r13, %rax
    SAVE %rax
    HASH_DST

    /* overlapping, forward: destination 1 byte above the source (a byte smear) */
    call reset
    lea 0x100(%r12), %rsi
    lea 0x101(%r12), %rdi
    mov $0x500, %ecx
    rep movsb
    HASH_SRC
    /* destination 3 bytes above the source, quadwords */
    call reset
    lea 0x100(%r12), %rsi
    lea 0x103(%r12), %rdi
    mov $0x200, %ecx
    rep movsq
    HASH_SRC
    /* destination below the source, backward, overlapping by 5 */
    call reset
    std
    lea 0x2000(%r12), %rsi
    lea 0x2005(%r12), %rdi
    mov $0x333, %ecx
    rep movsl
    cld
    HASH_SRC

    /* crossing pages: 0x1800 bytes from page offset 0xf00 to page offset 0x0a0 */
    call reset
    lea 0xf00(%r12), %rsi
    lea 0x10a0(%r13), %rdi
    mov $0x1800, %ecx
    rep movsb
    HASH_DST
    lea 0xf01(%r12), %rsi
    lea 0x0a3(%r13), %rdi
    mov $0x301, %ecx
    rep movsq
    HASH_DST

    /* REP STOS */
    call reset
    lea 0x123(%r13), %rdi
    mov $0x5a, %al
    mov $0x1234, %ecx
    rep stosb
    movabs $0x0123456789abcdef, %rax
    lea 0x2ffd(%r13), %rdi
    mov $0x111, %ecx
    rep stosq
    mov $0xbeef, %eax
    std
    lea 0x3ffe(%r13), %rdi
    mov $0x10, %ecx
    rep stosw
    cld
    mov %rdi, %rax
    sub %r13, %rax
    SAVE %rax
    HASH_DST

    /* REPE CMPSB: dst = src, then one byte changed at offset 0x1777 */
    call reset
    mov %r12, %rsi
    mov %r13, %rdi
    mov $BUF, %ecx
    rep movsb
    xorb $0x40, 0x1777(%r13)
    mov %r12, %rsi
    mov %r13, %rdi
    mov $BUF, %ecx
    repe cmpsb
    pushf
    pop %rax
    and $0x8d5, %eax                 /* OF SF ZF AF PF CF */
    SAVE %rax
    SAVE %rcx
    mov %rsi, %rax
    sub %r12, %rax
    SAVE %rax
    /* REPE CMPSB with no difference: runs to RCX = 0, ZF = 1 */
    mov %r12, %rsi
    mov %r12, %rdi
    mov $0x321, %ecx
    repe cmpsb
    pushf
    pop %rax
    and $0x8d5, %eax
    SAVE %rax
    SAVE %rcx

    /* REPNE SCASB: the first 0x5a byte of src after offset 0x10 */
    call reset
    lea 0x10(%r12), %rdi
    mov $0x5a, %al
    mov $BUF - 0x10, %ecx
    repne scasb
    SAVE %rcx
    mov %rdi, %rax
    sub %r12, %rax
    SAVE %rax
    /* backward, for a byte that is 0xee: RCX runs out, ZF = 0 */
    std
    lea 0x3ff(%r12), %rdi
    mov $0xee, %al
    mov $0x400, %ecx
    repne scasb
    cld
    pushf
    pop %rax
    and $0x8d5, %eax
    SAVE %rax
    mov %rdi, %rax
    sub %r12, %rax
    SAVE %rax

    /* LODSB / LODSQ sums */
    mov %r12, %rsi
    xor %edx, %edx
    mov $0x1000, %ecx
1:  lodsb
    movzbl %al, %eax
    add %rax, %rdx
    dec %ecx
    jnz 1b
    SAVE %rdx
    lea 3(%r12), %rsi
    xor %edx, %edx
    mov $0x100, %ecx
2:  lodsq
    xor %rax, %rdx
    rol $7, %rdx
    dec %ecx
    jnz 2b
    SAVE %rdx

    /* 32-bit address size: ESI/EDI/ECX only; RCX's upper half must not count */
    call reset
    mov %r12, %rsi
    lea 0x40(%r13), %rdi
    movabs $0x0000000100000123, %rcx
    addr32 rep movsb
    mov %ecx, %eax
    SAVE %rax
    mov %edi, %eax
    sub %r13d, %eax
    SAVE %rax
    lea 0x800(%r13), %rdi
    movabs $0x0000000200000044, %rcx
    mov $0x77, %al
    addr32 rep stosb
    lea 0x900(%r13), %rdi
    movabs $0x0000000300000011, %rcx
    mov $0xabcdef12, %eax
    addr32 rep stosl
    lea 0xa00(%r13), %rdi
    lea 0x10(%r12), %rsi
    mov $0x80, %ecx
    addr32 repe cmpsb
    mov %ecx, %eax
    SAVE %rax
    HASH_DST

    /* more overlaps: forward with the destination one element above (replicates) and one
     * byte below (a plain move) */
    call reset
    lea 0x300(%r12), %rsi
    lea 0x308(%r12), %rdi
    mov $0x100, %ecx
    rep movsq
    lea 0x1001(%r12), %rsi
    lea 0x1000(%r12), %rdi
    mov $0x900, %ecx
    rep movsb
    HASH_SRC
    /* REP with RCX = 0: nothing moves, flags stay (CF set before) */
    mov %r12, %rsi
    mov %r13, %rdi
    xor %ecx, %ecx
    stc
    rep movsb
    pushf
    pop %rax
    and $1, %eax
    mov %rdi, %rdx
    sub %r13, %rdx
    add %rdx, %rax
    SAVE %rax
    /* element sizes for SCAS and CMPS: REPNE SCASW/SCASD/SCASQ, REPE CMPSQ and CMPSW backward */
    call reset
    movzwl 0x246(%r12), %eax
    lea 0x10(%r12), %rdi
    mov $0x1000, %ecx
    repne scasw
    mov %rdi, %rax
    sub %r12, %rax
    shl $16, %rax
    or %rcx, %rax
    SAVE %rax
    mov 0x404(%r12), %eax
    mov %r12, %rdi
    mov $0x800, %ecx
    repne scasl
    mov %rdi, %rax
    sub %r12, %rax
    shl $16, %rax
    or %rcx, %rax
    SAVE %rax
    mov 0x808(%r12), %rax
    mov %r12, %rdi
    mov $0x400, %ecx
    repne scasq
    mov %rdi, %rax
    sub %r12, %rax
    shl $16, %rax
    or %rcx, %rax
    SAVE %rax
    mov %r12, %rsi
    mov %r13, %rdi
    mov $BUF, %ecx
    rep movsb
    xorb $1, 0x1235(%r13)
    mov %r12, %rsi
    mov %r13, %rdi
    mov $(BUF / 8), %ecx
    repe cmpsq
    pushf
    pop %rax
    and $0x8d5, %eax
    shl $16, %rax
    or %rcx, %rax
    SAVE %rax
    std
    lea 0x2ffe(%r12), %rsi
    lea 0x2ffe(%r13), %rdi
    mov $0x1000, %ecx
    repe cmpsw
    cld
    pushf
    pop %rax
    and $0x8d5, %eax
    shl $16, %rax
    or %rcx, %rax
    SAVE %rax
    /* REP LODSB: RAX = the last byte, RCX = 0 */
    lea 0x77(%r12), %rsi
    mov $0x99, %ecx
    movabs $0x1111111111111111, %rax
    rep lodsb
    SAVE %rax
    /* an FS override on the source (FS base = dst, set at CPL 0) */
    xor %esi, %esi
    lea 0x3000(%r12), %rdi
    mov $0x200, %ecx
    rep movsb %fs:(%rsi), %es:(%rdi)
    HASH_SRC

    mov %r15, %rax
    pop %r13
    pop %r12
    pop %r15
    ret

    .section .rodata
names:                               /* one per SAVE, in order; an empty name ends the list */
    .asciz "movsb fwd rdi-dst"
    .asciz "movsb fwd hash"
    .asciz "movsw/l/q fwd rsi-src"
    .asciz "movsw/l/q fwd hash"
    .asciz "movsb bwd rdi-dst"
    .asciz "movsw/l bwd rdi-dst"
    .asciz "movs bwd hash"
    .asciz "overlap movsb +1 hash"
    .asciz "overlap movsq +3 hash"
    .asciz "overlap movsl bwd +5 hash"
    .asciz "cross-page movsb hash"
    .asciz "cross-page movsq hash"
    .asciz "stosw bwd rdi-dst"
    .asciz "stos hash"
    .asciz "repe cmpsb flags"
    .asciz "repe cmpsb rcx"
    .asciz "repe cmpsb rsi-src"
    .asciz "repe cmpsb equal flags"
    .asciz "repe cmpsb equal rcx"
    .asciz "repne scasb rcx"
    .asciz "repne scasb rdi-src"
    .asciz "repne scasb bwd 0xee flags"
    .asciz "repne scasb bwd 0xee rdi-src"
    .asciz "lodsb sum"
    .asciz "lodsq mix"
    .asciz "addr32 movsb ecx"
    .asciz "addr32 movsb edi-dst"
    .asciz "addr32 cmpsb ecx"
    .asciz "addr32 hash"
    .asciz "overlap movsq +8 and movsb -1 hash"
    .asciz "rep movsb rcx=0: CF + rdi-dst"
    .asciz "repne scasw (rdi-src)<<16|rcx"
    .asciz "repne scasl (rdi-src)<<16|rcx"
    .asciz "repne scasq (rdi-src)<<16|rcx"
    .asciz "repe cmpsq flags<<16|rcx"
    .asciz "repe cmpsw bwd flags<<16|rcx"
    .asciz "rep lodsb rax"
    .asciz "fs: movsb hash"
    .byte 0

    .data
    .balign 8
results:
    .fill NRES, 8, 0

    .bss
    .balign 4096
src:
    .skip BUF
dst:
    .skip BUF
    .text
