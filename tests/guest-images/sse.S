/* sse: SSE/SSE2 at CPL 3 (PVM runs CPL 3 on the real CPU, the oracle; CPL 0 SSE arithmetic
 * fails there). CPL 0 turns on CR4.OSFXSR|OSXMMEXCPT, runs `user_sse` at CPL 3, which stores
 * its results in `results` (one qword per slot), then prints every slot in hex: FP arithmetic
 * in the four rounding modes, MXCSR flags, NaN propagation and the default NaN, MIN/MAX on
 * NaN, integer conversions incl. the integer indefinite, directed SQRT, FTZ and DAZ, compares,
 * COMISD flags, and the SSE2 integer operations. RCP/RSQRT are left out: their bits differ
 * between CPU generations. */
    .include "lib/common.inc"

    .set NSLOTS, 40
    .set CR4_OSFXSR, 1 << 9
    .set CR4_OSXMMEXCPT, 1 << 10

    .text
    .globl main
main:
    push %rbx
    push %r12
    push %r13
    mov %cr4, %rax
    or $(CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
    mov %rax, %cr4
    mov %cr0, %rax
    and $~(1 << 2), %eax             /* CR0.EM = 0 */
    or $(1 << 1), %eax               /* CR0.MP = 1 */
    and $~(1 << 3), %eax             /* CR0.TS = 0 */
    mov %rax, %cr0
    PRINT "sse: running at CPL 3\n"
    lea user_sse(%rip), %rdi
    xor %esi, %esi
    call run_user
    mov %rax, %r13                   /* 0x5e if user_sse ran to its end */
    xor %ebx, %ebx
    lea results(%rip), %r12
1:  PRINT "sse: "
    mov %rbx, %rdi
    mov $2, %esi
    call serial_print_hex
    PRINT " "
    mov (%r12,%rbx,8), %rdi
    mov $16, %esi
    call serial_print_hex
    PRINT "\n"
    inc %rbx
    cmp $NSLOTS, %rbx
    jne 1b
    xor %eax, %eax
    cmp $0x5e, %r13
    je 2f
    PRINT "sse: the CPL 3 code did not finish\n"
    mov $1, %eax
2:  pop %r13
    pop %r12
    pop %rbx
    ret

/* Set MXCSR to the immediate (through a stack slot). */
.macro MXCSR val
    movl $\val, -4(%rsp)
    ldmxcsr -4(%rsp)
.endm
/* Store MXCSR into slot n. */
.macro SAVE_MXCSR n
    stmxcsr (8*\n)(%rdi)
.endm

user_sse:                            /* CPL 3 */
    lea results(%rip), %rdi
    MXCSR 0x1f80
    /* 0-1: ADDPS */
    movaps ps_a(%rip), %xmm0
    addps ps_b(%rip), %xmm0
    movdqu %xmm0, 0(%rdi)
    /* 2-5: 1/3 in RN, RD, RU, RZ; 6: MXCSR (RZ, PE) */
    movsd one(%rip), %xmm1
    divsd three(%rip), %xmm1
    movsd %xmm1, 16(%rdi)
    MXCSR 0x3f80
    movsd one(%rip), %xmm1
    divsd three(%rip), %xmm1
    movsd %xmm1, 24(%rdi)
    MXCSR 0x5f80
    movsd one(%rip), %xmm1
    divsd three(%rip), %xmm1
    movsd %xmm1, 32(%rdi)
    MXCSR 0x7f80
    movsd one(%rip), %xmm1
    divsd three(%rip), %xmm1
    movsd %xmm1, 40(%rdi)
    SAVE_MXCSR 6
    /* 7: QNaN + SNaN (first source wins); 8: 1.0 + SNaN (quieted); 9: inf - inf */
    MXCSR 0x1f80
    movss qnan_s(%rip), %xmm2
    addss snan_s(%rip), %xmm2
    movss %xmm2, 56(%rdi)
    movss one_s(%rip), %xmm2
    addss snan_s(%rip), %xmm2
    movss %xmm2, 64(%rdi)
    movsd inf_d(%rip), %xmm3
    subsd inf_d(%rip), %xmm3
    movsd %xmm3, 72(%rdi)
    /* 10: MINSS(QNaN, 1.0) = 1.0; 11: MAXSD(1.0, SNaN) = the SNaN as is; 12: MXCSR */
    movss qnan_s(%rip), %xmm4
    minss one_s(%rip), %xmm4
    movss %xmm4, 80(%rdi)
    movsd one(%rip), %xmm4
    maxsd snan_d(%rip), %xmm4
    movsd %xmm4, 88(%rdi)
    SAVE_MXCSR 12
    /* 13-17: conversions to integer */
    MXCSR 0x1f80
    cvtsd2si two_half(%rip), %rax
    mov %rax, 104(%rdi)
    cvtsd2si m_two_half(%rip), %rax
    mov %rax, 112(%rdi)
    cvttsd2si m_two_7(%rip), %rax
    mov %rax, 120(%rdi)
    cvtsd2si big_d(%rip), %rax
    mov %rax, 128(%rdi)
    cvtss2si big_s(%rip), %eax
    mov %rax, 136(%rdi)
    /* 18-19: SQRTSD(2) rounded up and down */
    MXCSR 0x5f80
    sqrtsd two(%rip), %xmm5
    movsd %xmm5, 144(%rdi)
    MXCSR 0x3f80
    sqrtsd two(%rip), %xmm5
    movsd %xmm5, 152(%rdi)
    /* 20: DBL_MIN * 0.5 under FTZ; 22: its MXCSR; 21: without FTZ */
    MXCSR 0x9f80
    movsd dbl_min(%rip), %xmm6
    mulsd half(%rip), %xmm6
    movsd %xmm6, 160(%rdi)
    SAVE_MXCSR 22
    MXCSR 0x1f80
    movsd dbl_min(%rip), %xmm6
    mulsd half(%rip), %xmm6
    movsd %xmm6, 168(%rdi)
    /* 23: denormal * 2^52 under DAZ */
    MXCSR 0x1fc0
    movsd denorm_d(%rip), %xmm7
    mulsd two52(%rip), %xmm7
    movsd %xmm7, 184(%rdi)
    /* 24: CVTSD2SS(1e300) = inf; 25: MXCSR (OE PE) */
    MXCSR 0x1f80
    cvtsd2ss big_d2(%rip), %xmm8
    movss %xmm8, 192(%rdi)
    SAVE_MXCSR 25
    /* 26: CVTSS2SD of a negative SNaN */
    cvtss2sd snan_neg_s(%rip), %xmm9
    movsd %xmm9, 208(%rdi)
    /* 27-28: PADDUSB, PSUBSB */
    movdqa int_a(%rip), %xmm10
    paddusb int_b(%rip), %xmm10
    movq %xmm10, 216(%rdi)
    movdqa int_a(%rip), %xmm10
    psubsb int_b(%rip), %xmm10
    movq %xmm10, 224(%rdi)
    /* 29-30: PMADDWD */
    movdqa int_a(%rip), %xmm11
    pmaddwd int_b(%rip), %xmm11
    movdqu %xmm11, 232(%rdi)
    /* 31-32: PSADBW */
    movdqa int_a(%rip), %xmm12
    psadbw int_b(%rip), %xmm12
    movdqu %xmm12, 248(%rdi)
    /* 33: PSHUFD then PACKSSWB (low qword); 34: PMOVMSKB */
    pshufd $0x4e, int_a(%rip), %xmm13
    packsswb int_b(%rip), %xmm13
    movq %xmm13, 264(%rdi)
    movdqa int_b(%rip), %xmm13
    pmovmskb %xmm13, %eax
    mov %rax, 272(%rdi)
    /* 35: COMISD(1.0, QNaN) flags; 36: MXCSR (IE) */
    MXCSR 0x1f80
    movsd one(%rip), %xmm14
    comisd qnan_d(%rip), %xmm14
    pushfq
    pop %rax
    and $0x8d5, %eax
    mov %rax, 280(%rdi)
    SAVE_MXCSR 36
    /* 37: CMPPD NLE against (NaN, 0.5) */
    movapd pd_x(%rip), %xmm15
    cmpnlepd pd_y(%rip), %xmm15
    movmskpd %xmm15, %eax
    mov %rax, 296(%rdi)
    /* 38: CVTSI2SS(0x7fffffff) rounds to 2^31 */
    MXCSR 0x1f80
    cvtsi2ssl big_i(%rip), %xmm0
    movss %xmm0, 304(%rdi)
    /* 39: 1/0 (masked): inf, then MXCSR in the high dword */
    movss one_s(%rip), %xmm1
    divss zero_s(%rip), %xmm1
    movss %xmm1, 312(%rdi)
    stmxcsr 316(%rdi)
    MXCSR 0x1f80
    mov $0x5e, %eax
    ret

    .data
    .balign 16
ps_a:   .float 1.5, 2.0, -3.0, 1e30
ps_b:   .float 0.25, -2.0, 3.0, 1e30
int_a:  .quad 0x8081ff7f01020304, 0x7fff8000fffe0001
int_b:  .quad 0x7f8001ff05060708, 0x80007fff00030004
pd_x:   .quad 0x7ff8000000000000
        .double 1.0
pd_y:   .double 1.0, 0.5
one:    .double 1.0
three:  .double 3.0
two:    .double 2.0
half:   .double 0.5
two_half: .double 2.5
m_two_half: .double -2.5
m_two_7: .double -2.7
big_d:  .double 1e20
big_d2: .double 1e300
two52:  .double 4503599627370496.0
inf_d:  .quad 0x7ff0000000000000
snan_d: .quad 0x7ff0000000000005
qnan_d: .quad 0x7ff8000000000000
dbl_min: .quad 0x0010000000000000
denorm_d: .quad 0x0000000000000003
one_s:  .float 1.0
zero_s: .float 0.0
qnan_s: .long 0x7fc00001
snan_s: .long 0x7f800002
snan_neg_s: .long 0xff800123
big_s:  .float 3e9
big_i:  .long 0x7fffffff
    .balign 8
results:
    .fill NSLOTS, 8, 0
