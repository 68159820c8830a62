/* fwcfg_testdev: QEMU's test interfaces, the way kvm-unit-tests style kernels use them.
 * Reads fw_cfg (ports 0x510/0x511: signature, CPU count, RAM size), checks isa-debugcon at
 * 0xe9 (reads back 0xe9) and writes a line to it, exercises pc-testdev (the data register at
 * 0xe0 with dword/word writes and at 0xe8 bytewise, an IRQ-line port at 0x2005, the MMIO
 * scratch buffer at 0xff000000), finds pci-testdev on PCI bus 0 and runs one of its port and
 * one of its MMIO tests, and ends through isa-debug-exit: 0 if every check passed,
 * 1 otherwise (each failure prints a FAIL line).
 *
 * Run it with: -m 128 -smp 2 -chardev file,id=dbg,path=FILE
 *   -device isa-debugcon,iobase=0x402,chardev=dbg -device pc-testdev -device pci-testdev
 *   -device isa-debug-exit,iobase=0xf4,iosize=0x04
 * FILE then holds "fwcfg_testdev: hello on isa-debugcon\n". */
    .include "lib/common.inc"

    .set FW_CFG_SEL, 0x510
    .set FW_CFG_DATA, 0x511
    .set DEBUGCON, 0x402             /* SeaBIOS's port: 0xe9 is inside pc-testdev's 0xe8..0xeb */
    .set TESTDEV_DATA, 0xe0
    .set TESTDEV_BYTE, 0xe8
    .set TESTDEV_IRQ, 0x2000
    .set TESTDEV_IOMEM, 0xff000000

    .text
    .globl main
main:
    push %rbx
    push %r12
    sub $8, %rsp
    xor %r12d, %r12d                 /* failures */

    PRINT "fwcfg_testdev: fw_cfg signature "
    xor %edi, %edi
    call fwcfg_select
    mov $4, %edi
    call fwcfg_read
    cmp $0x554d4551, %eax            /* "QEMU" */
    je 1f
    PRINT "FAIL (not QEMU)\n"
    inc %r12d
    jmp 2f
1:  PRINT "QEMU\n"
2:
    PRINT "fwcfg_testdev: cpus "
    mov $0x05, %edi                  /* FW_CFG_NB_CPUS */
    call fwcfg_select
    mov $2, %edi
    call fwcfg_read
    mov %rax, %rdi
    call serial_print_dec
    PRINT ", ram "
    mov $0x03, %edi                  /* FW_CFG_RAM_SIZE */
    call fwcfg_select
    mov $8, %edi
    call fwcfg_read
    shr $20, %rax
    mov %rax, %rdi
    call serial_print_dec
    PRINT " MiB\n"

    mov $DEBUGCON, %edx
    in %dx, %al
    cmp $0xe9, %al
    je 1f
    PRINT "fwcfg_testdev: FAIL isa-debugcon does not read back 0xe9\n"
    inc %r12d
    jmp 2f
1:  PRINT "fwcfg_testdev: isa-debugcon present\n"
    lea debugcon_line(%rip), %rsi
    mov $DEBUGCON, %edx
3:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 3b
2:
    /* pc-testdev: the data register echoes what each width wrote. */
    mov $0x12345678, %eax
    out %eax, $TESTDEV_DATA
    xor %eax, %eax
    in $TESTDEV_DATA, %eax
    cmp $0x12345678, %eax
    jne testdev_fail
    mov $0xbeef, %ax
    out %ax, $TESTDEV_DATA + 2
    in $TESTDEV_DATA, %eax
    cmp $0xbeef5678, %eax
    jne testdev_fail
    mov $0x11, %al
    out %al, $TESTDEV_BYTE
    in $TESTDEV_DATA, %eax
    cmp $0xbeef5611, %eax
    jne testdev_fail
    in $TESTDEV_BYTE + 3, %al
    cmp $0xbe, %al
    jne testdev_fail
    /* An IRQ line up and down (the 8259s are masked: nothing is delivered). */
    mov $TESTDEV_IRQ + 5, %edx
    mov $1, %al
    out %al, %dx
    xor %eax, %eax
    out %al, %dx
    /* The MMIO scratch buffer keeps what was stored. */
    mov $TESTDEV_IOMEM, %ebx
    movl $0xcafef00d, 0x10(%rbx)
    movw $0x4242, 0x20(%rbx)
    mov 0x10(%rbx), %eax
    cmp $0xcafef00d, %eax
    jne testdev_fail
    movzwl 0x20(%rbx), %eax
    cmp $0x4242, %eax
    jne testdev_fail
    PRINT "fwcfg_testdev: pc-testdev ok\n"
    jmp done
testdev_fail:
    PRINT "fwcfg_testdev: FAIL pc-testdev\n"
    inc %r12d
done:
    call check_pci_testdev
    add %eax, %r12d
    test %r12d, %r12d
    jnz 1f
    PRINT "fwcfg_testdev: all checks passed\n"
    xor %eax, %eax
    jmp 2f
1:  mov $1, %eax
2:  add $8, %rsp
    pop %r12
    pop %rbx
    ret

/* pci-testdev: find 1b36:0005 on bus 0, take its BARs from config space, run one test on
 * each: "portio-no-eventfd" and "mmio-datamatch-eventfd" (both count byte writes of 0xfa at
 * their offset; QEMU's ioeventfd swallows that write, so 0 is right there too, as
 * kvm-unit-tests accepts). Returns EAX = 0 if the counts are right, 1 otherwise. */
check_pci_testdev:
    push %rbx
    push %r12
    push %r13
    xor %ebx, %ebx                   /* device number */
1:  mov %ebx, %eax
    shl $11, %eax
    or $0x80000000, %eax
    mov $0xcf8, %edx
    out %eax, %dx
    mov $0xcfc, %edx
    in %dx, %eax
    cmp $0x00051b36, %eax
    je 2f
    inc %ebx
    cmp $32, %ebx
    jb 1b
    PRINT "fwcfg_testdev: FAIL no pci-testdev on bus 0\n"
    jmp 9f
2:  mov %ebx, %eax                   /* BAR1: I/O ports */
    shl $11, %eax
    or $0x80000014, %eax
    mov $0xcf8, %edx
    out %eax, %dx
    mov $0xcfc, %edx
    in %dx, %eax
    and $0xfffc, %eax
    mov %eax, %r12d
    mov %ebx, %eax                   /* BAR0: memory */
    shl $11, %eax
    or $0x80000010, %eax
    mov $0xcf8, %edx
    out %eax, %dx
    mov $0xcfc, %edx
    in %dx, %eax
    and $0xfffffff0, %eax
    mov %eax, %r13d
    /* portio test 0: select, read its offset, write twice there, read the count. */
    mov %r12d, %edx
    xor %eax, %eax
    out %al, %dx
    lea 4(%r12), %edx
    in %dx, %eax
    cmp $131, %eax
    jne 8f
    lea (%r12, %rax), %edx
    mov $0xfa, %al                   /* the test's data byte */
    out %al, %dx
    out %al, %dx
    lea 12(%r12), %edx
    in %dx, %eax
    cmp $2, %eax
    jne 8f
    /* mmio test 2 (datamatch): only the 0xfa byte counts. */
    movb $2, (%r13)
    mov 4(%r13), %eax
    cmp $2050, %eax
    jne 8f
    movb $0x00, (%r13, %rax)
    movb $0xfa, (%r13, %rax)
    mov 12(%r13), %eax               /* 1; 0 where an ioeventfd took the write (QEMU) */
    cmp $1, %eax
    ja 8f
    PRINT "fwcfg_testdev: pci-testdev ok\n"
    xor %eax, %eax
    jmp 10f
8:  PRINT "fwcfg_testdev: FAIL pci-testdev counts\n"
9:  mov $1, %eax
10: pop %r13
    pop %r12
    pop %rbx
    ret

/* Select fw_cfg item EDI. */
fwcfg_select:
    mov %edi, %eax
    mov $FW_CFG_SEL, %edx
    out %ax, %dx
    ret

/* RAX = the next EDI (1..8) data bytes of the selected item, little-endian. */
fwcfg_read:
    mov %edi, %r9d
    xor %ecx, %ecx
    xor %r8d, %r8d
    mov $FW_CFG_DATA, %edx
1:  in %dx, %al
    movzbl %al, %eax
    shl %cl, %rax
    or %rax, %r8
    add $8, %ecx
    dec %r9d
    jnz 1b
    mov %r8, %rax
    ret

    .section .rodata
debugcon_line:
    .asciz "fwcfg_testdev: hello on isa-debugcon\n"
    .text
