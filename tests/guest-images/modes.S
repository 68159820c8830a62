/* modes: the mode switches, down and back up, at CPL 0.
 * 64-bit -> compatibility mode (KCODE32) -> CR0.PG=0: long mode off, 32-bit protected mode ->
 * EFER.LME=0 -> 16-bit protected mode (a 16-bit code segment) -> CR0.PE=0 and a far jump: real
 * mode, running a blob copied to 0x7000 (CS=0x0700). There: segment arithmetic (one byte
 * read back through DS=0x0700:0x0c00, ES=0x07c0:0 and FS=0:0x7c00), a far CALL to 0x0600:x
 * (the same linear address through another segment) and LRET, a 32-bit-addressed store read
 * back through LES, a line printed with IN/OUT polling of the UART, and (modes_tcg only) INT
 * 0x80 through the IVT and IRET, the handler seeing the caller's FLAGS: under PVM the vCPU
 * never comes back from a real-mode INT n (the run hangs until killed; measured).
 * Then CR0.PE=1 and a far jump to 32-bit protected mode (prints a line, reads EFER: LMA must
 * be 0), boot.inc's ENTER_LONG_MODE back to 64-bit, and finally 64-bit -> compatibility mode
 * (32-bit arithmetic, a 32-bit stack frame) -> 64-bit. The entry is boot.inc's (the multiboot
 * 32-bit entry goes straight to long mode), so the way down starts in 64-bit mode and also
 * covers leaving long mode. The values are printed in hex at the end; debug-exit 0 when they
 * are as expected. */
    .include "lib/common.inc"

    .set RM_BASE, 0x7000             /* the real-mode blob's home; CS = 0x0700 */
    .set RM_SEG, RM_BASE >> 4
    .set CODE16, (gdt_end - gdt)     /* added after the boot GDT in gdt2 */
    .set DATA16, CODE16 + 8

    .text
    .globl main
main:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    lea gdt(%rip), %rsi              /* gdt2 = the boot GDT + 16-bit code and data */
    lea gdt2(%rip), %rdi
    xor %ecx, %ecx
1:  mov (%rsi, %rcx, 8), %rax
    mov %rax, (%rdi, %rcx, 8)
    inc %ecx
    cmp $(CODE16 / 8), %ecx
    jne 1b
    movabs $0x00009B000000FFFF | (RM_BASE << 16), %rax   /* 16-bit code, base RM_BASE */
    mov %rax, CODE16(%rdi)
    movabs $0x000093000000FFFF, %rax /* 16-bit data, base 0, limit 64 KiB */
    mov %rax, DATA16(%rdi)
    lgdt gdt2_ptr(%rip)
    lea rm_blob(%rip), %rsi          /* the blob, byte by byte, to RM_BASE */
    mov $RM_BASE, %edi
    mov $(rm_blob_end - rm_blob), %ecx
2:  mov (%rsi), %al
    mov %al, (%rdi)
    inc %rsi
    inc %rdi
    dec %ecx
    jnz 2b

    PRINT "modes: 64-bit, going down to real mode\n"
    mov %rsp, saved_rsp(%rip)
    mov $KDATA, %eax                 /* compatibility and protected mode use DS and ES */
    mov %ax, %ds
    mov %ax, %es
    ljmpl *to_compat_down(%rip)

    .code32
compat_down:                         /* compatibility mode, CPL 0 */
    mov %cs, %eax
    mov %eax, compat_down_cs
    mov %cr0, %eax
    and $~CR0_PG, %eax
    mov %eax, %cr0                   /* long mode off: 32-bit protected mode */
    mov $MSR_EFER, %ecx
    rdmsr
    and $~EFER_LME, %eax
    wrmsr
    ljmp $CODE16, $(rm_pm16 - rm_blob)

pm32_back:                           /* 32-bit protected mode again, from real mode */
    mov $KDATA, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov saved_rsp, %esp
    mov $pm32_msg, %esi
    call puts32
    mov $MSR_EFER, %ecx
    rdmsr
    mov %eax, pm32_efer
    lgdt gdt2_ptr                    /* 6 bytes here: the base is below 4 GiB */
    ENTER_LONG_MODE long_back

/* puts32(ESI = string): IN/OUT polling, from 32-bit code */
puts32:
1:  movzbl (%esi), %eax
    test %eax, %eax
    jz 3f
    mov %eax, %ebx
    mov $COM1_LSR, %edx
2:  in %dx, %al
    test $LSR_THR_EMPTY, %al
    jz 2b
    mov %ebx, %eax
    mov $COM1_THR, %edx
    out %al, %dx
    inc %esi
    jmp 1b
3:  ret

compat_up:                           /* compatibility mode on the way back: a 32-bit frame */
    push %ebp
    mov %esp, %ebp
    mov $0x7fffffff, %eax
    add $0x10, %eax                  /* wraps in 32 bits: 0x8000000f */
    push %eax
    pop %edx
    mov %edx, compat_up_val
    mov %esp, %eax
    sub %ebp, %eax                   /* 0: push/pop moved ESP by 4 each */
    mov %eax, compat_up_frame
    pop %ebp
    mov %cs, %eax
    mov %eax, compat_up_cs
    ljmp $KCODE64, $back64
    .code64

long_back:                           /* 64-bit again */
    mov $KDATA, %eax
    mov %ax, %ss
    mov saved_rsp(%rip), %rsp
    lidt idt_ptr(%rip)               /* the 64-bit IDT back */
    PRINT "modes: 64-bit again; to compatibility mode and back\n"
    ljmpl *to_compat_up(%rip)
back64:
    xor %ebx, %ebx                   /* failures */
    PRINT "modes: compatibility mode on the way down: CS 0x"
    mov compat_down_cs(%rip), %edi
    mov $2, %esi
    call serial_print_hex
    PRINT "\nmodes: real mode: one byte three ways 0x"
    movzwl RM_BASE + (rm_bytes - rm_blob), %edi
    mov $4, %esi
    call serial_print_hex
    PRINT " 0x"
    movzbl RM_BASE + (rm_bytes - rm_blob) + 2, %edi
    mov $2, %esi
    call serial_print_hex
    PRINT ", far call: CS 0x"
    movzwl RM_BASE + (rm_far_cs - rm_blob), %edi
    mov $4, %esi
    call serial_print_hex
    PRINT ", return CS 0x"
    movzwl RM_BASE + (rm_ret_cs - rm_blob), %edi
    mov $4, %esi
    call serial_print_hex
    .ifdef MODES_TCG
    PRINT ", INT 0x80 AX 0x"
    movzwl RM_BASE + (rm_int_ax - rm_blob), %edi
    mov $4, %esi
    call serial_print_hex
    .endif
    PRINT ", addr32 + LES 0x"
    movzbl RM_BASE + (rm_addr32 - rm_blob), %edi
    mov $2, %esi
    call serial_print_hex
    PRINT ", CR0.PE "
    movzwl RM_BASE + (rm_cr0 - rm_blob), %edi
    and $1, %edi
    call serial_print_dec
    PRINT "\nmodes: 32-bit protected mode: EFER 0x"
    mov pm32_efer(%rip), %edi
    mov $4, %esi
    call serial_print_hex
    PRINT "\nmodes: compatibility mode on the way up: CS 0x"
    mov compat_up_cs(%rip), %edi
    mov $2, %esi
    call serial_print_hex
    PRINT ", 0x7fffffff + 0x10 = 0x"
    mov compat_up_val(%rip), %edi
    mov $8, %esi
    call serial_print_hex
    PRINT ", frame "
    mov compat_up_frame(%rip), %edi
    call serial_print_dec
    PRINT "\n"
    cmpw $0x5a5a, RM_BASE + (rm_bytes - rm_blob)
    jne 3f
    cmpb $0x5a, RM_BASE + (rm_bytes - rm_blob) + 2
    jne 3f
    cmpw $0x0600, RM_BASE + (rm_far_cs - rm_blob)
    jne 3f
    cmpw $RM_SEG, RM_BASE + (rm_ret_cs - rm_blob)
    jne 3f
    .ifdef MODES_TCG
    cmpw $0x9235, RM_BASE + (rm_int_ax - rm_blob)
    jne 3f
    .endif
    cmpb $0xa5, RM_BASE + (rm_addr32 - rm_blob)
    jne 3f
    testl $(1 << 10), pm32_efer(%rip) /* LMA */
    jnz 3f
    cmpl $0x8000000f, compat_up_val(%rip)
    jne 3f
    cmpl $KCODE32, compat_up_cs(%rip)
    je 4f
3:  mov $1, %ebx
4:  mov %ebx, %eax
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret

/* The real-mode blob: position-dependent on RM_BASE (offsets are relative to rm_blob). */
    .code16
rm_blob:
rm_pm16:                             /* 16-bit protected mode, CS = CODE16 (base RM_BASE) */
    mov $DATA16, %ax                 /* real-mode-like cached limits (64 KiB) */
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    mov %cr0, %eax
    and $~CR0_PE, %eax
    mov %eax, %cr0
    ljmp $RM_SEG, $(rm_real - rm_blob)
rm_real:                             /* real mode */
    mov $RM_SEG, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x0ff0, %sp
    mov %cr0, %eax
    mov %ax, rm_cr0 - rm_blob
    movb $0x5a, 0x0c00               /* DS:0x0c00 = linear 0x7c00 */
    mov $0x07c0, %ax
    mov %ax, %es
    mov %es:0, %bl                   /* ES=0x07c0:0, the same byte */
    xor %ax, %ax
    mov %ax, %fs
    mov %fs:0x7c00, %bh              /* FS=0:0x7c00, the same byte */
    mov %bx, rm_bytes - rm_blob
    mov 0x0c00, %al
    mov %al, rm_bytes - rm_blob + 2
    lcall $(RM_SEG - 0x100), $(rm_far - rm_blob + 0x1000)
    .ifdef MODES_TCG
    lidt rm_ivt_ptr - rm_blob        /* the real-mode IVT at 0 (IDTR held the 64-bit IDT) */
    xor %ax, %ax                     /* IVT[0x80] = RM_SEG:rm_isr */
    mov %ax, %es
    movw $(rm_isr - rm_blob), %es:0x200
    movw $RM_SEG, %es:0x202
    mov $0x1234, %ax
    stc
    int $0x80
    mov %ax, rm_int_ax - rm_blob
    .endif
    mov $0x1000, %ebx                /* 32-bit addressing (0x67) in real mode */
    movb $0xa5, 0x0c01(%ebx)         /* DS:0x1c01 = linear 0x8c01 */
    les rm_far_ptr - rm_blob, %di    /* ES:DI = 0x0800:0x0c01, the same byte */
    mov %es:(%di), %al
    mov %al, rm_addr32 - rm_blob
    mov $(rm_msg - rm_blob), %si
    call rm_puts
    mov %cr0, %eax                   /* back up: 32-bit protected mode */
    or $CR0_PE, %eax
    mov %eax, %cr0
    ljmpl $KCODE32, $pm32_back

rm_far:                              /* reached as 0x0600:(offset + 0x1000) */
    mov %cs, %ax
    mov %ax, rm_far_cs - rm_blob
    mov %sp, %bp
    mov 2(%bp), %ax                  /* the caller's CS, pushed by the far call */
    mov %ax, rm_ret_cs - rm_blob
    lret

rm_isr:                              /* INT 0x80: AX += 1, CF of the caller into AX bit 15 */
    push %bp
    mov %sp, %bp
    inc %ax
    testb $1, 6(%bp)                 /* the FLAGS the INT pushed: BP, IP, CS, FLAGS */
    jz 1f
    or $0x8000, %ax
1:  pop %bp
    iret

rm_puts:                             /* DS:SI = string; IN/OUT polling */
1:  lodsb
    test %al, %al
    jz 3f
    mov %al, %bl
    mov $COM1_LSR, %dx
2:  in %dx, %al
    test $LSR_THR_EMPTY, %al
    jz 2b
    mov %bl, %al
    mov $COM1_THR, %dx
    out %al, %dx
    jmp 1b
3:  ret

rm_msg:
    .asciz "modes: real mode: printing with IN/OUT\n"
    .balign 2
rm_cr0:    .word 0xffff
rm_bytes:  .word 0, 0
rm_far_cs: .word 0
rm_ret_cs: .word 0
rm_int_ax: .word 0
rm_addr32: .word 0
rm_far_ptr: .word 0x0c01, 0x0800
rm_ivt_ptr: .word 0x3ff
           .long 0
rm_blob_end:
    .code64

    .section .rodata
pm32_msg:
    .asciz "modes: 32-bit protected mode, paging off\n"

    .data
    .balign 16
gdt2:
    .fill 16, 8, 0
gdt2_ptr:
    .word DATA16 + 8 - 1
    .quad gdt2
    .balign 8
to_compat_down:
    .long compat_down
    .word KCODE32
    .balign 8
to_compat_up:
    .long compat_up
    .word KCODE32
    .balign 8
saved_rsp:       .quad 0
compat_down_cs:  .long 0
compat_up_cs:    .long 0
compat_up_val:   .long 0
compat_up_frame: .long 0
pm32_efer:       .long 0
    .text
