/* x87: the x87 FPU at CPL 3 (PVM runs CPL 0 x87 arithmetic wrongly, CPL 3 runs on the host
 * CPU): loads, arithmetic with rounding and precision control, integer/BCD stores, constants,
 * compares into EFLAGS, remainders, stack faults, FNSTENV and FXSAVE words. CPL 0 enables the
 * FPU (CR0.MP|NE, EM|TS clear; CR4.OSFXSR), CPL 3 stores every result in `res`, CPL 0 prints
 * them. x87.expected is what a real CPU prints (run under /dev/kvm). */
    .include "lib/common.inc"

    .text
    .globl main
main:
    push %rbx
    push %r12
    mov %cr0, %rax
    and $~0xc, %rax                  /* EM, TS off */
    or $0x22, %rax                   /* MP, NE on */
    mov %rax, %cr0
    mov %cr4, %rax
    or $0x200, %rax                  /* OSFXSR */
    mov %rax, %cr4
    PRINT "x87: running at CPL 3\n"
    lea x87_user(%rip), %rdi
    xor %esi, %esi
    call run_user
    lea names(%rip), %rbx
    lea res(%rip), %r12
1:  cmpb $0, (%rbx)
    je 3f
    PRINT "x87: "
    mov %rbx, %rdi
    call serial_puts
2:  cmpb $0, (%rbx)                  /* skip the name */
    lea 1(%rbx), %rbx
    jne 2b
    PRINT " "
    mov 8(%r12), %rdi
    mov $4, %esi
    call serial_print_hex
    PRINT "_"
    mov (%r12), %rdi
    mov $16, %esi
    call serial_print_hex
    PRINT "\n"
    add $16, %r12
    jmp 1b
3:  PRINT "x87: done\n"
    xor %eax, %eax
    pop %r12
    pop %rbx
    ret

/* Each SAVE stores 8 bytes from RAX at slot \n (the slot's high word stays 0). */
.macro SAVE n
    mov %rax, res+16*\n(%rip)
.endm
.macro SW n
    xor %eax, %eax
    fnstsw %ax
    SAVE \n
.endm
.macro FLAGS n
    pushfq
    pop %rax
    and $0x8d5, %eax
    SAVE \n
.endm

x87_user:                            /* CPL 3 */
    fninit
    fldl c_1p5(%rip)                 /* 0: 1.5 + 2.25 as m64 */
    faddl c_2p25(%rip)
    fstpl res+16*0(%rip)
    fld1                             /* 1: 1/3 as m80, 2: its status word */
    fidivl c_i3(%rip)
    fstpt res+16*1(%rip)
    SW 2
    fnclex
    fildl c_i2(%rip)                 /* 3: sqrt(2) */
    fsqrt
    fstpt res+16*3(%rip)
    fldcw c_cw_pc24(%rip)            /* 4: 1/3 with PC = 24 bits */
    fld1
    fidivl c_i3(%rip)
    fstpt res+16*4(%rip)
    fldcw c_cw_pc53(%rip)            /* 5: 2/3 with PC = 53 bits */
    fildl c_i2(%rip)
    fidivl c_i3(%rip)
    fstpt res+16*5(%rip)
    fldcw c_cw_def(%rip)
    fldpi                            /* 6, 7: constants; 8: FLDLN2 rounded down */
    fstpt res+16*6(%rip)
    fldl2e
    fstpt res+16*7(%rip)
    fldcw c_cw_down(%rip)
    fldln2
    fstpt res+16*8(%rip)
    fldl c_m2p5(%rip)                /* 9: FISTP -2.5 rounding down = -3 */
    fistpl res+16*9(%rip)
    fldcw c_cw_def(%rip)
    fldl c_2p5(%rip)                 /* 10: FISTP 2.5 to nearest = 2 */
    fistpl res+16*10(%rip)
    fldl c_m2p5(%rip)                /* 11: FISTTP -2.5 = -2 */
    fisttpl res+16*11(%rip)
    fnclex
    fld1                             /* 12..15: FCOMI/FUCOMIP flags */
    fildl c_i2(%rip)
    fcomi %st(1), %st
    FLAGS 12
    fxch %st(1)
    fcomi %st(1), %st
    FLAGS 13
    fld %st(0)
    fucomip %st(1), %st
    FLAGS 14
    flds c_qnan(%rip)
    fucomip %st(1), %st
    FLAGS 15
    fstp %st(0)
    fstp %st(0)
    fildl c_i3(%rip)                 /* 16, 17: FPREM 10 mod 3 and its status */
    fildl c_i10(%rip)
    fprem
    SW 17
    fstpl res+16*16(%rip)
    fildl c_i11(%rip)                /* 18, 19: FPREM1 11 rem 3 = -1 */
    fprem1
    SW 19
    fstpl res+16*18(%rip)
    fstp %st(0)
    fildl c_bcd(%rip)                /* 20: FBSTP -12345678 */
    fbstp res+16*20(%rip)
    fldz                             /* 21: FXAM +0; 22: FXAM empty; 23: FXAM -inf */
    fxam
    SW 21
    fstp %st(0)
    fxam
    SW 22
    fldl c_minf(%rip)
    fxam
    SW 23
    fstp %st(0)
    fninit                           /* 24, 25: stack underflow, the indefinite stored */
    fadd %st(1), %st
    SW 24
    fstpl res+16*25(%rip)
    fninit                           /* 26: stack overflow */
    fld1
    fld1
    fld1
    fld1
    fld1
    fld1
    fld1
    fld1
    fld1
    SW 26
    fninit                           /* 27, 28: m64 overflow to +inf, OE|PE */
    fldl c_big(%rip)
    fmull c_big(%rip)
    fstpl res+16*27(%rip)
    SW 28
    fninit                           /* 29: FSCALE 3 * 2^4.7; 30: FRNDINT 2.5; 31: FXTRACT */
    fldl c_4p7(%rip)
    fildl c_i3(%rip)
    fscale
    fstpt res+16*29(%rip)
    fstp %st(0)
    fldl c_2p5(%rip)
    frndint
    fstpt res+16*30(%rip)
    fldl c_m2p5(%rip)
    fxtract
    fstpt res+16*31(%rip)
    fstpt res+16*32(%rip)            /* 32: FXTRACT exponent */
    fninit                           /* 33: FNSTENV FCW, FSW; 34: FTW word */
    fld1
    fnstenv env(%rip)
    mov env(%rip), %rax
    SAVE 33
    mov env+8(%rip), %rax
    SAVE 34
    fldenv env(%rip)
    fldz                             /* 35: FXSAVE FCW/FSW/abridged tag */
    fxsave fxarea(%rip)
    mov fxarea(%rip), %rax
    shl $24, %rax
    shr $24, %rax
    SAVE 35
    fninit
    fxrstor fxarea(%rip)             /* 36: FXRSTOR then FADDP = 1 */
    faddp
    fstpl res+16*36(%rip)
    fnstsw %ax                       /* 37: FNSTSW after all that */
    movzwl %ax, %eax
    SAVE 37
    fninit
    fldl c_third(%rip)               /* 38: 1/3 (m64) * 3, PC = 53, rounded up to 1 */
    fldcw c_cw_up(%rip)
    fmull c_d3(%rip)
    SW 39                            /* 39: C1 = rounded up */
    fstpt res+16*38(%rip)
    fldcw c_cw_def(%rip)
    fninit
    xor %eax, %eax
    ret

    .section .rodata
    .balign 8
c_1p5:   .double 1.5
c_2p25:  .double 2.25
c_2p5:   .double 2.5
c_m2p5:  .double -2.5
c_4p7:   .double 4.7
c_big:   .double 1e300
c_minf:  .quad 0xfff0000000000000
c_third: .double 0.3333333333333333
c_d3:    .double 3.0
c_i2:    .long 2
c_i3:    .long 3
c_i10:   .long 10
c_i11:   .long 11
c_bcd:   .long -12345678
c_qnan:  .long 0x7fc00000
c_cw_def:  .word 0x037f
c_cw_pc24: .word 0x007f
c_cw_pc53: .word 0x027f
c_cw_down: .word 0x077f
c_cw_up:   .word 0x0a7f
names:
    .asciz "add_m64", "third_m80", "third_fsw", "sqrt2_m80", "third_pc24", "twothirds_pc53"
    .asciz "fldpi", "fldl2e", "fldln2_down", "fistp_down", "fistp_near", "fisttp"
    .asciz "fcomi_gt", "fcomi_lt", "fucomip_eq", "fucomip_nan", "fprem", "fprem_fsw"
    .asciz "fprem1", "fprem1_fsw", "fbstp", "fxam_zero", "fxam_empty", "fxam_minf"
    .asciz "underflow_fsw", "underflow_m64", "overflow_fsw", "ovf_m64", "ovf_fsw"
    .asciz "fscale", "frndint", "fxtract_sig", "fxtract_exp", "fnstenv_cw_sw", "fnstenv_tw"
    .asciz "fxsave_head", "fxrstor_add", "fsw_end", "mul_up", "mul_up_fsw"
    .byte 0

    .data
    .balign 16
res:
    .fill 16*40, 1, 0
env:
    .fill 32, 1, 0
    .balign 16
fxarea:
    .fill 512, 1, 0
