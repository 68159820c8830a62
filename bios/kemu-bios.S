# kemu's firmware: a 64 KiB ROM the CPU runs from the reset vector.
#
# The machine maps the ROM at 0xFFFF0000..0xFFFFFFFF and copies it to 0xF0000..0xFFFFF (the
# PC's low alias). The CPU comes out of RESET in real mode at CS:IP = F000:FFF0 with CS base
# 0xFFFF0000, so its first fetch is at 0xFFFFFFF0: the far jump at the end of this file. From
# there everything runs from the low alias (linked at 0xF0000):
#
#   real mode       COM1 set up, fw_cfg signature, RAM size and CPU count read and printed,
#                   the boot descriptor "etc/kemu/boot" found in fw_cfg's file directory and
#                   copied to DESC
#   protected mode  flat GDT, page tables identity-mapping the first GiB built at PML4
#   long mode       paging on with EFER.LME, 64-bit code
#   hand over       to the entry the descriptor names, in the mode it names: either straight
#                   from long mode (the Linux 64-bit boot protocol) or back down to 32-bit
#                   protected mode with paging off (multiboot, PVH)
#
# Each step prints one line starting "kemu firmware: " on COM1. The contract with the machine
# (the descriptor's layout, the memory the firmware uses) is in bios/README.md and
# src/machine/firmware.rs. No x87/SSE, no interrupts (IF stays 0, no IDT is loaded).

.set COM1,          0x3f8
.set FW_CFG_SEL,    0x510
.set FW_CFG_DATA,   0x511
.set FW_CFG_RAM_SIZE, 0x03
.set FW_CFG_NB_CPUS, 0x05
.set FW_CFG_FILE_DIR, 0x19

# Scratch RAM (0x10000..0x20000), free of everything the machine's loaders write.
.set SCRATCH,       0x10000
.set PML4,          0x10000
.set PDPT,          0x11000
.set PD,            0x12000
.set DESC,          0x13000
.set ENTRY_BUF,     0x13200         # one file-directory entry while it is compared
.set STACK_TOP,     0x20000

# The boot descriptor (little-endian), as src/machine/firmware.rs writes it.
.set DESC_MAGIC,    0x3144424b      # "KBD1"
.set DESC_LEN,      144
.set D_MODE,        DESC + 4        # u32: 32 or 64
.set D_ENTRY,       DESC + 8        # u64
.set D_RAX,         DESC + 16       # u64 x 8: rax rcx rdx rbx rsp rbp rsi rdi
.set D_RCX,         DESC + 24
.set D_RDX,         DESC + 32
.set D_RBX,         DESC + 40
.set D_RSP,         DESC + 48
.set D_RBP,         DESC + 56
.set D_RSI,         DESC + 64
.set D_RDI,         DESC + 72
.set D_CR3,         DESC + 80       # u64 (64-bit entry)
.set D_CS,          DESC + 88       # u16
.set D_DS,          DESC + 90       # u16 (DS, ES, FS, GS, SS)
.set D_GDTR,        DESC + 94       # u16 limit, then u64 base: LGDT's operand
.set D_NAME,        DESC + 104      # NUL-terminated, at most 40 bytes

# Our GDT's selectors.
.set CODE32,        0x08
.set DATA,          0x10
.set CODE64,        0x18

    .text
    .globl rom_start
rom_start:

# ---------------------------------------------------------------------------------------------
# Real mode. CS = 0xF000 (base 0xF0000): offsets are `label - rom_start`.
    .code16
start16:
    cli
    cld
    mov $0xf000, %ax                # DS: the ROM, for messages and the GDT pointer
    mov %ax, %ds
    mov $(SCRATCH >> 4), %ax        # SS and ES: the scratch area
    mov %ax, %ss
    mov %ax, %es
    mov $0xfff0, %sp

    # COM1: 115200 baud (divisor 1), 8 data bits, no parity, 1 stop bit.
    mov $COM1 + 3, %dx
    mov $0x80, %al
    out %al, %dx
    mov $COM1, %dx
    mov $1, %al
    out %al, %dx
    mov $COM1 + 1, %dx
    xor %al, %al
    out %al, %dx
    mov $COM1 + 3, %dx
    mov $3, %al
    out %al, %dx

    mov $(msg_real - rom_start), %si
    call print16

    # fw_cfg: the signature item must read "QEMU".
    xor %ax, %ax
    call fw_select16
    mov $(sig_qemu - rom_start), %si
    mov $4, %cx
1:  in %dx, %al
    cmp (%si), %al
    jne no_fw_cfg
    inc %si
    dec %cx
    jnz 1b

    mov $(msg_fwcfg - rom_start), %si
    call print16
    mov $FW_CFG_RAM_SIZE, %ax
    call fw_select16
    call fw_read_le32_16            # low half of the u64 byte count
    mov %eax, %ebx
    call fw_read_le32_16            # high half
    shrd $20, %eax, %ebx            # bytes -> MiB (fits in 32 bits below 4 PiB)
    mov %ebx, %eax
    call print_dec16
    mov $(msg_mib - rom_start), %si
    call print16
    mov $FW_CFG_NB_CPUS, %ax
    call fw_select16
    call fw_read_le32_16
    movzwl %ax, %eax                # NB_CPUS is a u16
    call print_dec16
    mov $(msg_cpus - rom_start), %si
    call print16

    # Walk the file directory for "etc/kemu/boot".
    mov $FW_CFG_FILE_DIR, %ax
    call fw_select16
    call fw_read_be32_16
    mov %ax, %bp                    # file count (QEMU caps it far below 64 Ki)
next_file:
    test %bp, %bp
    jz no_descriptor
    dec %bp
    mov $(ENTRY_BUF - SCRATCH), %di # size (be32), key (be16), reserved, name[56]
    mov $64, %cx
    mov $FW_CFG_DATA, %dx
1:  in %dx, %al
    stosb
    dec %cx
    jnz 1b
    mov $(boot_name - rom_start), %si
    mov $(ENTRY_BUF - SCRATCH + 8), %di
    mov $(boot_name_end - boot_name), %cx
2:  mov (%si), %al
    cmp %es:(%di), %al
    jne next_file
    inc %si
    inc %di
    dec %cx
    jnz 2b
    # Found: select the file's key (big-endian in the entry) and copy it to DESC.
    mov %es:ENTRY_BUF - SCRATCH + 4, %ax
    xchg %al, %ah
    call fw_select16
    mov $(DESC - SCRATCH), %di
    mov $DESC_LEN, %cx
3:  in %dx, %al
    stosb
    dec %cx
    jnz 3b
    cmpl $DESC_MAGIC, %es:DESC - SCRATCH
    jne bad_descriptor

    # To 32-bit protected mode: our flat GDT, CR0 = PE | ET | NE (cache on).
    lgdtl gdt_ptr - rom_start
    mov $0x31, %eax
    mov %eax, %cr0
    ljmpl $CODE32, $pm32

no_fw_cfg:
    mov $(msg_no_fw_cfg - rom_start), %si
    jmp stop16
no_descriptor:
    mov $(msg_no_desc - rom_start), %si
    jmp stop16
bad_descriptor:
    mov $(msg_bad_desc - rom_start), %si
stop16:
    call print16
1:  hlt
    jmp 1b

# Select fw_cfg item AX; leaves DX = the data port.
fw_select16:
    mov $FW_CFG_SEL, %dx
    out %ax, %dx
    mov $FW_CFG_DATA, %dx
    ret

# EAX = the next four data bytes, little-endian (DX = the data port).
fw_read_le32_16:
    push %cx
    mov $4, %cx
1:  in %dx, %al
    ror $8, %eax
    dec %cx
    jnz 1b
    pop %cx
    ret

# EAX = the next four data bytes, big-endian (DX = the data port).
fw_read_be32_16:
    push %cx
    mov $4, %cx
1:  shl $8, %eax
    in %dx, %al
    dec %cx
    jnz 1b
    pop %cx
    ret

# Print EAX in decimal.
print_dec16:
    push %ecx
    push %edx
    push %bx
    mov $10, %ecx
    xor %bx, %bx
1:  xor %edx, %edx
    div %ecx
    push %dx
    inc %bx
    test %eax, %eax
    jnz 1b
2:  pop %ax
    add $'0', %al
    call putc16
    dec %bx
    jnz 2b
    pop %bx
    pop %edx
    pop %ecx
    ret

# Print the NUL-terminated string at DS:SI.
print16:
    lodsb
    test %al, %al
    jz 1f
    call putc16
    jmp print16
1:  ret

# AL to COM1, once the transmitter holding register is empty.
putc16:
    push %dx
    push %ax
    mov $COM1 + 5, %dx
1:  in %dx, %al
    test $0x20, %al
    jz 1b
    pop %ax
    mov $COM1, %dx
    out %al, %dx
    pop %dx
    ret

# ---------------------------------------------------------------------------------------------
# 32-bit protected mode, flat segments, paging off.
    .code32
pm32:
    mov $DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    mov $STACK_TOP, %esp
    mov $msg_prot, %esi
    call print32

    # Page tables: PML4[0] -> PDPT, PDPT[0] -> PD, PD = 512 2 MiB pages (the first GiB).
    mov $PML4, %edi
    xor %eax, %eax
    mov $(3 * 4096 / 4), %ecx
    rep stosl
    movl $(PDPT | 3), PML4
    movl $(PD | 3), PDPT
    mov $PD, %edi
    mov $0x83, %eax                 # present, writable, 2 MiB page
    mov $512, %ecx
1:  mov %eax, (%edi)
    add $0x200000, %eax
    add $8, %edi
    dec %ecx
    jnz 1b

    # Long mode: CR4.PAE, CR3, EFER.LME, then CR0.PG activates it.
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $PML4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000000, %eax
    mov %eax, %cr0
    ljmp $CODE64, $lm64

# Print the NUL-terminated string at ESI.
print32:
    lodsb
    test %al, %al
    jz 1f
    call putc32
    jmp print32
1:  ret

putc32:
    push %edx
    push %eax
    mov $COM1 + 5, %dx
1:  in %dx, %al
    test $0x20, %al
    jz 1b
    pop %eax
    mov $COM1, %dx
    out %al, %dx
    pop %edx
    ret

# ---------------------------------------------------------------------------------------------
# 64-bit long mode.
    .code64
lm64:
    mov $DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $STACK_TOP, %esp
    mov $msg_long, %esi
    call print64

    mov $msg_hand, %esi
    call print64
    mov $D_NAME, %esi
    call print64
    mov $msg_at, %esi
    call print64
    mov D_ENTRY, %rax
    call hex64
    mov D_MODE, %eax
    cmp $64, %eax
    je handover64
    cmp $32, %eax
    je handover32
    mov $msg_bad_mode, %esi
    call print64
1:  hlt
    jmp 1b

# The Linux 64-bit boot protocol: stay in long mode, switch to the machine's GDT and page
# tables, load the registers and far-return to CS:entry.
handover64:
    mov $msg_in64, %esi
    call print64
    lidt zero_idt
    lgdt D_GDTR
    mov D_CR3, %rax
    mov %rax, %cr3
    movzwl D_DS, %eax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    mov D_RSP, %rsp
    push $2                         # RFLAGS: interrupts off
    popfq
    movzwl D_CS, %eax
    push %rax
    pushq D_ENTRY
    xor %r8d, %r8d
    xor %r9d, %r9d
    xor %r10d, %r10d
    xor %r11d, %r11d
    xor %r12d, %r12d
    xor %r13d, %r13d
    xor %r14d, %r14d
    xor %r15d, %r15d
    mov D_RAX, %rax
    mov D_RCX, %rcx
    mov D_RDX, %rdx
    mov D_RBX, %rbx
    mov D_RBP, %rbp
    mov D_RSI, %rsi
    mov D_RDI, %rdi
    lretq

# Multiboot and PVH: back to 32-bit protected mode with paging off. First to compatibility
# mode (a 32-bit code segment), where clearing CR0.PG leaves long mode.
handover32:
    mov $msg_in32, %esi
    call print64
    push $CODE32
    push $down32
    lretq

    .code32
down32:
    mov %cr0, %eax
    and $0x7fffffff, %eax
    mov %eax, %cr0
    mov $0xc0000080, %ecx
    rdmsr
    and $~0x100, %eax
    wrmsr
    mov %cr4, %eax
    and $~0x20, %eax
    mov %eax, %cr4
    xor %eax, %eax
    mov %eax, %cr3
    lidt zero_idt
    lgdt D_GDTR
    movzwl D_DS, %eax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    mov D_RSP, %esp
    push $2
    popfl
    movzwl D_CS, %eax
    push %eax
    pushl D_ENTRY
    mov D_RAX, %eax
    mov D_RCX, %ecx
    mov D_RDX, %edx
    mov D_RBX, %ebx
    mov D_RBP, %ebp
    mov D_RSI, %esi
    mov D_RDI, %edi
    lret

    .code64
# Print the NUL-terminated string at RSI.
print64:
    lodsb
    test %al, %al
    jz 1f
    call putc64
    jmp print64
1:  ret

putc64:
    push %rdx
    push %rax
    mov $COM1 + 5, %dx
1:  in %dx, %al
    test $0x20, %al
    jz 1b
    pop %rax
    mov $COM1, %dx
    out %al, %dx
    pop %rdx
    ret

# Print RAX in hex: 8 digits, or 16 when the high half is not zero.
hex64:
    mov %rax, %r8
    mov $28, %r9d
    shr $32, %rax
    jz 1f
    mov $60, %r9d
1:  mov %r8, %rax
    mov %r9d, %ecx
    shr %cl, %rax
    and $0xf, %eax
    movzbl hex_digits(%rax), %eax
    call putc64
    sub $4, %r9d
    jns 1b
    ret

# ---------------------------------------------------------------------------------------------
# Data (read-only: it lives in the ROM).
    .p2align 3
gdt:
    .quad 0
    .quad 0x00cf9b000000ffff        # 0x08: flat 32-bit code
    .quad 0x00cf93000000ffff        # 0x10: flat data
    .quad 0x00af9b000000ffff        # 0x18: 64-bit code
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt
zero_idt:
    .word 0
    .quad 0

sig_qemu:       .ascii "QEMU"
boot_name:      .asciz "etc/kemu/boot"
boot_name_end:
hex_digits:     .ascii "0123456789abcdef"
msg_real:       .asciz "kemu firmware: real mode, first instruction at 0xfffffff0\n"
msg_fwcfg:      .asciz "kemu firmware: fw_cfg \"QEMU\": "
msg_mib:        .asciz " MiB RAM, "
msg_cpus:       .asciz " CPU(s)\n"
msg_prot:       .asciz "kemu firmware: protected mode\n"
msg_long:       .asciz "kemu firmware: long mode\n"
msg_hand:       .asciz "kemu firmware: handing over to "
msg_at:         .asciz " at 0x"
msg_in64:       .asciz " in long mode\n"
msg_in32:       .asciz " in 32-bit protected mode\n"
msg_bad_mode:   .asciz "\nkemu firmware: the boot descriptor names no entry mode I know; halting\n"
msg_no_fw_cfg:  .asciz "kemu firmware: no fw_cfg device at 0x510; halting\n"
msg_no_desc:    .asciz "kemu firmware: no etc/kemu/boot in fw_cfg (nothing to boot); halting\n"
msg_bad_desc:   .asciz "kemu firmware: etc/kemu/boot has a bad magic number; halting\n"

# ---------------------------------------------------------------------------------------------
# The reset vector: the last 16 bytes of the ROM (0xFFFFFFF0, and 0xFFFF0 in the low alias).
    .org 0xfff0, 0xff
reset_vector:
    .code16
    ljmp $0xf000, $(start16 - rom_start)
    .org 0x10000, 0xff
