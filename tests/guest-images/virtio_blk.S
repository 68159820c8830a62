/* virtio_blk: a polling virtio-blk driver, modern virtio-pci only.
 *
 * Scans PCI bus 0 (mechanism #1) for 1af4:1042, walks the vendor capabilities for the
 * common/notify/ISR/device structures, moves their BAR (the one the common structure names; all
 * four must share it) to 0xE0000000 (a BAR write: the device must follow it), enables memory
 * decoding and bus mastering, negotiates VERSION_1 only, sets up
 * queue 0 with 8 entries, and then, depending on the command line's last word when it is one
 * letter (kemu passes -append as is; QEMU puts the kernel's path first):
 *
 *   (none)  reads sectors 0..7 and prints their checksum, GET_ID, writes the pattern
 *           "KEMU" + sector-relative bytes to sector 5, flushes, reads sector 5 back and checks
 *           it. Prints each request's status.
 *   w       "wild": an OUT whose data descriptor points at 8 GiB (outside RAM) and an IN into
 *           that address; prints both statuses (1 = IOERR expected), then a good read.
 *   i       "INTx": routes the function's interrupt line (config 0x3C) through the 8259s in level
 *           mode (ELCR), sleeps in HLT after a FLUSH and counts the interrupt; the handler
 *           reads the ISR (which lowers the line) and EOIs.
 *   l       "loop": writes sectors 0..63 round and round with a counter in every sector,
 *           forever (for the SIGKILL crash test); prints "looping" first.
 *
 * Without the device it prints "virtio_blk: no 1af4:1042 device" and succeeds, so the guest
 * also runs in the peer script with no disk. Checksum: h = ((h << 5) | (h >> 59)) ^ byte over
 * the 4096 bytes, from h = 0 (shifts and XOR only: CPL 0 code stays simple for PVM).
 * Ends with debug-exit 0; 1 when the device misbehaves (setup refused, no completion, ISR
 * not set, read-back mismatch). */
    .include "lib/common.inc"

    .set PCI_ADDR, 0xcf8
    .set PCI_DATA, 0xcfc
    .set NEW_BAR, 0xe0000000
    .set QSIZE, 8
    .set WILD, 0x200000000

    .set VIRTQ_DESC_F_NEXT, 1
    .set VIRTQ_DESC_F_WRITE, 2

    .text
    .globl main
main:
    push %rbx
    push %r12
    push %r13
    call find_device
    test %eax, %eax
    jnz 1f
    PRINT "virtio_blk: no 1af4:1042 device\n"
    xor %eax, %eax
    jmp 9f
1:  call setup_device
    test %eax, %eax
    jnz 8f
    mov mb_info(%rip), %rbx          /* flags bit 2: cmdline at +16 */
    xor %r12d, %r12d
    testl $4, (%rbx)
    jz 2f
    mov 16(%rbx), %ebx
    xor %ecx, %ecx                   /* last character */
    xor %edx, %edx                   /* the one before it */
5:  movzbl (%rbx), %eax
    test %eax, %eax
    jz 6f
    mov %ecx, %edx
    mov %eax, %ecx
    inc %rbx
    jmp 5b
6:  cmp $' ', %edx                   /* a one-letter last word is the mode */
    je 7f
    test %edx, %edx
    jnz 2f
7:  mov %ecx, %r12d
2:  cmp $'i', %r12d
    je 10f
    cmp $'w', %r12d
    je 3f
    cmp $'l', %r12d
    je 4f
    call test_basic
    jmp 9f
3:  call test_wild
    jmp 9f
4:  call test_loop
    jmp 9f
10: call test_intx
    jmp 9f
8:  mov $1, %eax
9:  pop %r13
    pop %r12
    pop %rbx
    ret

/* pci_read(EDI = device number, ESI = register) -> EAX */
pci_read:
    mov %edi, %eax
    shl $11, %eax
    or %esi, %eax
    or $0x80000000, %eax
    mov $PCI_ADDR, %edx
    out %eax, %dx
    mov $PCI_DATA, %edx
    in %dx, %eax
    ret

/* pci_write(EDI = device, ESI = register, EDX = value) */
pci_write:
    mov %edx, %ecx
    mov %edi, %eax
    shl $11, %eax
    or %esi, %eax
    or $0x80000000, %eax
    mov $PCI_ADDR, %edx
    out %eax, %dx
    mov %ecx, %eax
    mov $PCI_DATA, %edx
    out %eax, %dx
    ret

/* find_device -> EAX = 1 and pci_dev set when found */
find_device:
    push %rbx
    xor %ebx, %ebx
1:  mov %ebx, %edi
    xor %esi, %esi
    call pci_read
    cmp $0x10421af4, %eax
    je 2f
    inc %ebx
    cmp $32, %ebx
    jb 1b
    xor %eax, %eax
    pop %rbx
    ret
2:  mov %ebx, pci_dev(%rip)
    PRINT "virtio_blk: found at slot "
    mov pci_dev(%rip), %edi
    call serial_print_dec
    PRINT "\n"
    mov $1, %eax
    pop %rbx
    ret

/* setup_device -> EAX = 0 on success */
setup_device:
    push %rbx
    push %r12
    /* Walk the capabilities: structure offsets (BAR-relative for now) and their BAR. */
    mov pci_dev(%rip), %edi
    mov $0x34, %esi
    call pci_read
    movzbl %al, %ebx                 /* current capability offset */
1:  test %ebx, %ebx
    jz 3f
    mov pci_dev(%rip), %edi
    mov %ebx, %esi
    call pci_read                    /* id, next, len, cfg_type */
    mov %eax, %r12d
    cmp $0x09, %al
    jne 2f
    mov pci_dev(%rip), %edi
    lea 4(%rbx), %esi
    call pci_read                    /* bar */
    movzbl %al, %eax
    mov %r12d, %ecx
    shr $24, %ecx
    cmp $1, %ecx                     /* the common structure's BAR is the one we map */
    jne 10f
    mov %eax, bar_index(%rip)
10: mov pci_dev(%rip), %edi
    lea 8(%rbx), %esi
    call pci_read                    /* offset inside the BAR */
    mov %r12d, %ecx
    shr $24, %ecx                    /* cfg_type */
    cmp $1, %ecx
    jne 11f
    mov %rax, common(%rip)
11: cmp $2, %ecx
    jne 12f
    mov %rax, notify(%rip)
    mov pci_dev(%rip), %edi
    lea 16(%rbx), %esi
    call pci_read
    mov %eax, notify_mult(%rip)
    mov %r12d, %ecx
    shr $24, %ecx
12: cmp $3, %ecx
    jne 13f
    mov %rax, isr(%rip)
13: cmp $4, %ecx
    jne 2f
    mov %rax, devcfg(%rip)
2:  mov %r12d, %ebx
    shr $8, %ebx
    and $0xfc, %ebx
    jmp 1b
    /* Move that BAR to NEW_BAR (both halves of a 64-bit one), check it stuck, and turn on
     * memory decoding + bus mastering. Every structure is assumed to share this BAR. */
3:  mov bar_index(%rip), %ebx
    cmp $5, %ebx
    movl $1, fail_step(%rip)
    ja 90f
    lea 0x10(,%rbx,4), %r12d         /* the BAR's config offset */
    mov pci_dev(%rip), %edi
    mov %r12d, %esi
    mov $NEW_BAR, %edx
    call pci_write
    mov pci_dev(%rip), %edi
    mov %r12d, %esi
    call pci_read
    mov %eax, %ebx
    and $0xfffffff0, %eax
    cmp $NEW_BAR, %eax
    movl $2, fail_step(%rip)
    jne 90f
    and $6, %ebx                     /* type 2: 64-bit */
    cmp $4, %ebx
    jne 4f
    mov pci_dev(%rip), %edi
    lea 4(%r12), %esi
    xor %edx, %edx
    call pci_write
4:  mov pci_dev(%rip), %edi
    mov $0x04, %esi
    mov $0x6, %edx
    call pci_write
    mov $NEW_BAR, %eax
    add %rax, common(%rip)
    add %rax, notify(%rip)
    add %rax, isr(%rip)
    add %rax, devcfg(%rip)
    mov common(%rip), %rbx
    /* Reset, ACKNOWLEDGE | DRIVER. */
    movb $0, 0x14(%rbx)
    movb $3, 0x14(%rbx)
    movl $1, 0x00(%rbx)              /* device_feature_select = 1 */
    mov 0x04(%rbx), %eax
    test $1, %eax                    /* VERSION_1 */
    movl $3, fail_step(%rip)
    jz 90f
    movl $0, 0x00(%rbx)
    mov 0x04(%rbx), %eax
    test $(1 << 5), %eax             /* VIRTIO_BLK_F_RO */
    jz 4f
    PRINT "virtio_blk: read-only device\n"
    mov common(%rip), %rbx
4:  movl $1, 0x08(%rbx)
    movl $1, 0x0c(%rbx)              /* driver features: VERSION_1 only */
    movl $0, 0x08(%rbx)
    movl $0, 0x0c(%rbx)
    movb $0xb, 0x14(%rbx)            /* | FEATURES_OK */
    movzbl 0x14(%rbx), %eax
    test $8, %eax
    movl $4, fail_step(%rip)
    jz 90f
    /* Queue 0: 8 entries. */
    movw $0, 0x16(%rbx)
    movzwl 0x18(%rbx), %eax
    cmp $QSIZE, %eax
    movl $5, fail_step(%rip)
    jb 90f
    movw $QSIZE, 0x18(%rbx)
    lea vq_desc(%rip), %rax
    mov %eax, 0x20(%rbx)
    movl $0, 0x24(%rbx)
    lea vq_avail(%rip), %rax
    mov %eax, 0x28(%rbx)
    movl $0, 0x2c(%rbx)
    lea vq_used(%rip), %rax
    mov %eax, 0x30(%rbx)
    movl $0, 0x34(%rbx)
    movzwl 0x1e(%rbx), %eax          /* queue_notify_off * multiplier */
    xor %ecx, %ecx
    mov notify_mult(%rip), %edx
5:  test %edx, %edx                  /* multiply by adding: no MUL at CPL 0 */
    jz 6f
    add %rax, %rcx
    dec %edx
    jmp 5b
6:  add %rcx, notify(%rip)
    movw $1, 0x1c(%rbx)              /* queue_enable */
    movb $0xf, 0x14(%rbx)            /* | DRIVER_OK */
    movzbl 0x14(%rbx), %eax
    cmp $0xf, %eax
    movl $6, fail_step(%rip)
    jne 90f
    PRINT "virtio_blk: capacity "
    mov devcfg(%rip), %rax
    mov (%rax), %rdi
    call serial_print_dec
    PRINT " sectors\n"
    xor %eax, %eax
    pop %r12
    pop %rbx
    ret
90: PRINT "virtio_blk: device setup failed at step "
    mov fail_step(%rip), %edi
    call serial_print_dec
    PRINT "\n"
    mov $1, %eax
    pop %r12
    pop %rbx
    ret

/* request(EDI = type, RSI = sector, RDX = buffer, ECX = length (0: no data), R8D = 1 if the
 * device writes the buffer) -> EAX = status byte, or 0x100 if the request never completed
 * or the ISR did not say so. */
request:
    mov %edi, req_hdr(%rip)
    movl $0, req_hdr+4(%rip)
    mov %rsi, req_hdr+8(%rip)
    movb $0xff, req_status(%rip)
    lea vq_desc(%rip), %r9
    lea req_hdr(%rip), %rax
    mov %rax, 0(%r9)
    movl $16, 8(%r9)
    movw $VIRTQ_DESC_F_NEXT, 12(%r9)
    movw $1, 14(%r9)
    lea 16(%r9), %r10                /* where the status descriptor goes */
    test %ecx, %ecx
    jz 1f
    mov %rdx, 16(%r9)
    mov %ecx, 24(%r9)
    mov $VIRTQ_DESC_F_NEXT, %eax
    test %r8d, %r8d
    jz 2f
    or $VIRTQ_DESC_F_WRITE, %eax
2:  mov %ax, 28(%r9)
    movw $2, 30(%r9)
    lea 32(%r9), %r10
1:  lea req_status(%rip), %rax
    mov %rax, 0(%r10)
    movl $1, 8(%r10)
    movw $VIRTQ_DESC_F_WRITE, 12(%r10)
    movw $0, 14(%r10)
    /* Publish head 0 in the available ring. */
    lea vq_avail(%rip), %r9
    movzwl 2(%r9), %eax              /* idx */
    mov %eax, %ecx
    and $(QSIZE - 1), %ecx
    movw $0, 4(%r9,%rcx,2)
    inc %eax
    mov %ax, 2(%r9)
    mov %eax, %r11d                  /* used idx to wait for */
    mov notify(%rip), %rax
    movw $0, (%rax)                  /* ring queue 0 */
    lea vq_used(%rip), %r9
    mov $0x10000000, %ecx            /* QEMU completes asynchronously; kemu at once */
3:  movzwl 2(%r9), %eax
    cmp %r11w, %ax
    je 4f
    dec %ecx
    jnz 3b
    mov $0x100, %eax
    ret
4:  cmpl $0, no_isr_read(%rip)     /* INTx mode: the interrupt handler reads it */
    jne 6f
    mov isr(%rip), %rax
    movzbl (%rax), %eax              /* reading clears it and lowers INTx */
    test $1, %eax
    jz 5f
    movzbl req_status(%rip), %eax
    ret
5:  mov $0x100, %eax
    ret
6:  movzbl req_status(%rip), %eax
    ret

/* print_status(EDI = label string, ESI = status) */
print_status:
    push %rbx
    push %r12
    push %r13
    mov %esi, %ebx
    call serial_puts
    PRINT " status "
    mov %ebx, %edi
    call serial_print_dec
    PRINT "\n"
    pop %r13
    pop %r12
    pop %rbx
    ret

/* checksum(RDI = buffer, ECX = length) -> RAX */
checksum:
    xor %eax, %eax
1:  mov %rax, %rdx
    shl $5, %rax
    shr $59, %rdx
    or %rdx, %rax
    movzbl (%rdi), %edx
    xor %rdx, %rax
    inc %rdi
    dec %ecx
    jnz 1b
    ret

test_basic:
    push %rbx
    push %r12
    push %r13
    xor %r13d, %r13d                 /* failures */
    /* Read sectors 0..7. */
    mov $0, %edi
    xor %esi, %esi
    lea buf(%rip), %rdx
    mov $4096, %ecx
    mov $1, %r8d
    call request
    mov %eax, %ebx
    lea s_read(%rip), %rdi
    mov %ebx, %esi
    call print_status
    cmp $0x100, %ebx
    jne 1f
    inc %r13d
1:  PRINT "virtio_blk: checksum of sectors 0-7: "
    lea buf(%rip), %rdi
    mov $4096, %ecx
    call checksum
    mov %rax, %rdi
    mov $16, %esi
    call serial_print_hex
    PRINT "\n"
    /* GET_ID into buf. */
    movq $0, buf(%rip)
    movq $0, buf+8(%rip)
    movq $0, buf+16(%rip)
    movq $0, buf+24(%rip)
    mov $8, %edi
    xor %esi, %esi
    lea buf(%rip), %rdx
    mov $20, %ecx
    mov $1, %r8d
    call request
    mov %eax, %ebx
    PRINT "virtio_blk: id '"
    lea buf(%rip), %rdi
    call serial_puts
    lea s_id(%rip), %rdi
    mov %ebx, %esi
    call print_status
    /* The pattern for sector 5: "KEMU" then byte i = i. */
    lea buf(%rip), %rdi
    xor %ecx, %ecx
2:  mov %cl, (%rdi,%rcx)
    inc %ecx
    cmp $512, %ecx
    jb 2b
    movl $0x554d454b, buf(%rip)      /* "KEMU" */
    mov $1, %edi
    mov $5, %esi
    lea buf(%rip), %rdx
    mov $512, %ecx
    xor %r8d, %r8d
    call request
    mov %eax, %r12d                  /* write status: 0 unless read-only */
    lea s_write(%rip), %rdi
    mov %r12d, %esi
    call print_status
    mov $4, %edi
    xor %esi, %esi
    xor %edx, %edx
    xor %ecx, %ecx
    xor %r8d, %r8d
    call request
    lea s_flush(%rip), %rdi
    mov %eax, %esi
    call print_status
    /* Read sector 5 back into buf2 and compare when the write succeeded. */
    mov $0, %edi
    mov $5, %esi
    lea buf2(%rip), %rdx
    mov $512, %ecx
    mov $1, %r8d
    call request
    lea s_read5(%rip), %rdi
    mov %eax, %esi
    call print_status
    test %r12d, %r12d
    jnz 4f
    xor %ecx, %ecx
    lea buf(%rip), %rsi
    lea buf2(%rip), %rdi
3:  movzbl (%rsi,%rcx), %eax
    movzbl (%rdi,%rcx), %edx
    cmp %eax, %edx
    jne 5f
    inc %ecx
    cmp $512, %ecx
    jb 3b
    PRINT "virtio_blk: sector 5 reads back what was written\n"
    jmp 4f
5:  PRINT "virtio_blk: sector 5 read-back MISMATCH\n"
    inc %r13d
4:  mov %r13d, %eax
    pop %r13
    pop %r12
    pop %rbx
    ret

test_wild:
    push %rbx
    mov $1, %edi                     /* OUT from outside RAM */
    mov $2, %esi
    mov $WILD, %rdx
    mov $512, %ecx
    xor %r8d, %r8d
    call request
    lea s_wild_out(%rip), %rdi
    mov %eax, %esi
    call print_status
    mov $0, %edi                     /* IN into outside RAM */
    mov $2, %esi
    mov $WILD, %rdx
    mov $512, %ecx
    mov $1, %r8d
    call request
    lea s_wild_in(%rip), %rdi
    mov %eax, %esi
    call print_status
    mov $0, %edi                     /* the device still works */
    xor %esi, %esi
    lea buf(%rip), %rdx
    mov $512, %ecx
    mov $1, %r8d
    call request
    lea s_read(%rip), %rdi
    mov %eax, %esi
    call print_status
    xor %eax, %eax
    pop %rbx
    ret

test_loop:
    push %rbx
    push %r12
    PRINT "virtio_blk: looping\n"
    xor %ebx, %ebx                   /* counter */
1:  mov %ebx, buf(%rip)              /* the counter heads every 512 bytes of the buffer */
    mov %ebx, buf+512(%rip)
    mov %ebx, buf+1024(%rip)
    mov %ebx, buf+1536(%rip)
    mov %ebx, %esi
    and $63, %esi
    mov $1, %edi
    lea buf(%rip), %rdx
    mov $2048, %ecx
    xor %r8d, %r8d
    call request
    test %eax, %eax
    jnz 2f
    inc %ebx
    jmp 1b
2:  mov $1, %eax
    pop %r12
    pop %rbx
    ret

test_intx:
    push %rbx
    push %r12
    push %r13
    mov pci_dev(%rip), %edi
    mov $0x3c, %esi
    call pci_read
    movzbl %al, %ebx                 /* the IRQ the machine routed INTA# to */
    cmp $15, %ebx
    ja 90f
    PRINT "virtio_blk: interrupt line "
    mov %ebx, %edi
    call serial_print_dec
    PRINT "\n"
    /* vector = 0x20 + irq (master 0x20-0x27, slave 0x28-0x2f) */
    lea 0x20(%rbx), %eax
    shl $4, %eax
    lea idt(%rip), %rdi
    add %rax, %rdi
    lea intx_isr(%rip), %rax
    mov %ax, (%rdi)
    movw $KCODE64, 2(%rdi)
    movw $0x8E00, 4(%rdi)
    shr $16, %rax
    mov %ax, 6(%rdi)
    shr $16, %rax
    mov %eax, 8(%rdi)
    movl $0, 12(%rdi)
    /* 8259 pair at 0x20/0x28, cascade on IRQ 2. */
    mov $0x11, %al
    out %al, $0x20
    out %al, $0xa0
    mov $0x20, %al
    out %al, $0x21
    mov $0x28, %al
    out %al, $0xa1
    mov $0x04, %al
    out %al, $0x21
    mov $0x02, %al
    out %al, $0xa1
    mov $0x01, %al
    out %al, $0x21
    out %al, $0xa1
    /* ELCR: the line is level-triggered; unmask it (and the cascade). */
    mov %ebx, %ecx
    and $7, %ecx
    mov $1, %r12d
    shl %cl, %r12d                   /* bit inside its 8259 */
    mov $0xff, %r13d
    xor %r12d, %r13d                 /* mask with that bit clear */
    cmp $8, %ebx
    jae 1f
    mov $0x4d0, %edx
    in %dx, %al
    or %r12b, %al
    out %al, %dx
    mov %r13d, %eax
    out %al, $0x21
    jmp 2f
1:  mov $0x4d1, %edx
    in %dx, %al
    or %r12b, %al
    out %al, %dx
    mov $0xfb, %al
    out %al, $0x21
    mov %r13d, %eax
    out %al, $0xa1
2:  movl $1, no_isr_read(%rip)
    mov $4, %edi                     /* FLUSH, completes at once, then the interrupt */
    xor %esi, %esi
    xor %edx, %edx
    xor %ecx, %ecx
    xor %r8d, %r8d
    call request
    mov %eax, %r12d
3:  sti
    hlt
    cli
    cmpl $0, intx_count(%rip)
    je 3b
    mov $0xff, %al
    out %al, $0x21
    out %al, $0xa1
    lea s_flush(%rip), %rdi
    mov %r12d, %esi
    call print_status
    PRINT "virtio_blk: INTx interrupt taken, ISR "
    mov intx_isr_value(%rip), %edi
    call serial_print_dec
    PRINT "\n"
    xor %eax, %eax
    cmpl $1, intx_isr_value(%rip)
    je 4f
    mov $1, %eax
4:  pop %r13
    pop %r12
    pop %rbx
    ret
90: mov $1, %eax
    jmp 4b

intx_isr:
    push %rax
    mov isr(%rip), %rax
    movzbl (%rax), %eax              /* read-to-clear: INTx goes low */
    mov %eax, intx_isr_value(%rip)
    incl intx_count(%rip)
    mov $0x20, %al                   /* non-specific EOI to both 8259s */
    out %al, $0xa0
    out %al, $0x20
    pop %rax
    iretq

    .section .rodata
s_read:     .asciz "virtio_blk: read sectors 0-7"
s_id:       .asciz "'"
s_write:    .asciz "virtio_blk: write sector 5"
s_flush:    .asciz "virtio_blk: flush"
s_read5:    .asciz "virtio_blk: read sector 5"
s_wild_out: .asciz "virtio_blk: write from outside RAM"
s_wild_in:  .asciz "virtio_blk: read into outside RAM"

    .data
    .balign 8
pci_dev:     .quad 0
bar_index:   .quad 0xff
fail_step:   .quad 0
no_isr_read: .quad 0
intx_count:  .quad 0
intx_isr_value: .quad 0
common:      .quad 0
notify:      .quad 0
notify_mult: .quad 0
isr:         .quad 0
devcfg:      .quad 0
req_hdr:     .quad 0, 0
req_status:  .quad 0
    .balign 4096
vq_desc:     .fill QSIZE * 16, 1, 0
    .balign 64
vq_avail:    .fill 4 + 2 * QSIZE + 2, 1, 0
    .balign 64
vq_used:     .fill 4 + 8 * QSIZE + 2, 1, 0
    .balign 4096
buf:         .fill 4096, 1, 0
buf2:        .fill 4096, 1, 0
