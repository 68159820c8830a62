/* smc: self-modifying code at CPL 3 (the code pages are writable and user-accessible).
 * 1. An immediate patched after its instruction already ran twice in a loop: the later
 *    iterations must use the new value.
 * 2. The next instruction patched in the same straight-line block (no jump between the store
 *    and the patched instruction).
 * 3. Code copied to a fresh page and called, then overwritten with other code and called again.
 * 4. Code written through one virtual page and run through another that maps the same physical
 *    page (a 4 KiB page table set up at CPL 0), then rewritten through the first and run again.
 * 5. REP STOSB filling the instructions right after it with NOPs (they must not run).
 * 6. An instruction straddling a page boundary, run, patched in its second page, run again.
 * Each result is printed; the expected output is the host CPU's (under KVM). */
    .include "lib/common.inc"

    .set ALIAS_VA, 0x40000000        /* PD entry 512: a 4 KiB table with two aliases */
    .set PTE_FLAGS, PTE_P | PTE_RW | PTE_US

    .text
    .globl main
main:
    push %rbx
    push %r12
    lea alias_pt(%rip), %rdi         /* .bss is not zeroed for us */
    xor %ecx, %ecx
1:  movq $0, (%rdi, %rcx, 8)
    inc %ecx
    cmp $512, %ecx
    jne 1b
    /* pd[512] (virtual 1 GiB) -> alias_pt: two virtual pages, one physical page */
    lea alias_pt(%rip), %rax
    or $PTE_FLAGS, %rax
    lea pd(%rip), %rdi
    mov %rax, 512 * 8(%rdi)
    lea code_page(%rip), %rax
    or $PTE_FLAGS, %rax
    lea alias_pt(%rip), %rdi
    mov %rax, (%rdi)
    mov %rax, 8(%rdi)
    mov %cr3, %rax                   /* drop the old 2 MiB translation */
    mov %rax, %cr3

    PRINT "smc: running at CPL 3\n"
    lea user_smc(%rip), %rdi
    xor %esi, %esi
    call run_user
    lea results(%rip), %rbx
    lea names(%rip), %r12
1:  cmpb $0, (%r12)
    je 3f
    PRINT "smc: "
    mov %r12, %rdi
    call serial_puts
2:  cmpb $0, (%r12)
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

.macro SAVE reg
    mov \reg, (%r15)
    add $8, %r15
.endm

/* copy(RDI = destination, RSI = source, RDX = length), byte by byte */
copy:
    test %rdx, %rdx
    jz 2f
1:  mov (%rsi), %al
    mov %al, (%rdi)
    inc %rsi
    inc %rdi
    dec %rdx
    jnz 1b
2:  ret

user_smc:                            /* CPL 3 */
    push %r15
    push %rbx
    lea results(%rip), %r15

    /* 1: the immediate of an instruction that already ran */
    xor %edx, %edx
    xor %ecx, %ecx
1:  cmp $2, %ecx
    jne 2f
    movl $0x22220000, patched_imm + 1(%rip)
2:
patched_imm:
    mov $0x00001111, %eax            /* B8 imm32: the immediate is at +1 */
    add %eax, %edx
    rol $4, %edx
    inc %ecx
    cmp $5, %ecx
    jne 1b
    SAVE %rdx

    /* 2: the very next instruction, in the same block */
    movb $0x77, next_insn + 1(%rip)
next_insn:
    mov $0x11, %al                   /* B0 imm8 */
    movzbl %al, %eax
    SAVE %rax

    /* 3: code copied to a fresh page, then replaced */
    lea fresh_page(%rip), %rdi
    lea blob_a(%rip), %rsi
    mov $(blob_a_end - blob_a), %edx
    call copy
    mov $0x10, %edi
    call fresh_page
    SAVE %rax
    lea fresh_page(%rip), %rdi
    lea blob_b(%rip), %rsi
    mov $(blob_b_end - blob_b), %edx
    call copy
    mov $0x10, %edi
    call fresh_page
    SAVE %rax

    /* 4: written through ALIAS_VA, run through ALIAS_VA + 4 KiB */
    mov $ALIAS_VA + 0x100, %rdi
    lea blob_a(%rip), %rsi
    mov $(blob_a_end - blob_a), %edx
    call copy
    mov $0x20, %edi
    mov $ALIAS_VA + 0x1100, %rax
    call *%rax
    SAVE %rax
    mov $ALIAS_VA + 0x100, %rdi
    lea blob_b(%rip), %rsi
    mov $(blob_b_end - blob_b), %edx
    call copy
    mov $0x20, %edi
    mov $ALIAS_VA + 0x1100, %rax
    call *%rax
    SAVE %rax
    /* and once more, patching only the immediate through the alias */
    movl $0x5000, ALIAS_VA + 0x100 + 3
    mov $0x20, %edi
    mov $ALIAS_VA + 0x1100, %rax
    call *%rax
    SAVE %rax

    /* 5: REP STOSB overwriting the code right after it with NOPs */
    xor %edx, %edx
    lea stos_target(%rip), %rdi
    mov $(stos_target_end - stos_target), %ecx
    mov $0x90, %al
    rep stosb
stos_target:
    .rept 8
    inc %edx                         /* FF C2: 8 of them, gone before they run */
    .endr
stos_target_end:
    SAVE %rdx

    /* 6: an instruction straddling a page boundary, patched in its second page */
    call straddle_insn
    mov %eax, %ebx
    movb $0x99, straddle_insn + 4(%rip)
    call straddle_insn
    shl $32, %rax
    or %rbx, %rax
    SAVE %rax

    pop %rbx
    pop %r15
    ret

    .balign 4096
    .fill 4096 - 3, 1, 0xcc          /* straddle_insn starts 3 bytes before a page end */
straddle_insn:
    mov $0x11223344, %eax            /* B8 44 33 | 22 11: the page boundary after 0x33 */
    ret

blob_a:                              /* returns 0xa1a10000 + RDI */
    lea 0xa1a10000(%rdi), %eax
    ret
blob_a_end:
blob_b:                              /* returns 0x0b0b0000 + 2 * RDI; LEA disp32 at +3 */
    lea 0x0b0b0000(%rdi, %rdi), %eax
    ret
blob_b_end:

    .section .rodata
names:
    .asciz "patched immediate in a loop"
    .asciz "patched next instruction"
    .asciz "copied code"
    .asciz "copied code replaced"
    .asciz "alias page code"
    .asciz "alias page code replaced"
    .asciz "alias page immediate patched"
    .asciz "rep stosb over the following code"
    .asciz "page-straddling instruction patched (new<<32|old)"
    .byte 0

    .data
    .balign 8
results:
    .fill 16, 8, 0

    .bss
    .balign 4096
alias_pt:
    .skip 4096
code_page:
    .skip 4096
fresh_page:
    .skip 4096
    .text
