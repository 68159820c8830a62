/* demo: the guest `kemu` boots when given no kernel. It tells a learner, step by step, what a
 * PC kernel does first:
 *   1. the multiboot loader entered us in 32-bit protected mode (EAX = 0x2BADB002);
 *   2. we switched on PAE paging and long mode (lib/boot.inc: about a dozen instructions);
 *   3. in 64-bit mode we find the ACPI RSDP in the BIOS area and walk the RSDT/XSDT to the
 *      MADT, whose enabled Local APIC entries give the number of CPUs;
 *   4. we drop to user mode (CPL 3) with SYSRETQ and compute a CRC32 in software there;
 *   5. the user code comes back to the kernel (CPL 0) by executing HLT, which a CPL 3 program
 *      may not do: the CPU raises #GP and enters the kernel through the IDT (lib/idt.inc).
 *      SYSCALL would be the usual way up, but under PVM (this project's /dev/kvm) a SYSCALL
 *      from CPL 3 sometimes comes back still at CPL 3; exceptions are delivered reliably.
 *      Then we print the result;
 *   6. we power the machine off through ACPI (PM1a_CNT at port 0x604), so kemu exits with 0.
 * Before each step it writes the step's number to the POST port 0x80, as firmware and kernels
 * report their progress (`kemu -d stages` timestamps these writes).
 * Everything it prints is independent of the machine but for the CPU count. */
    .include "lib/common.inc"
    .include "lib/acpi.inc"

    .set MULTIBOOT_BOOTLOADER_MAGIC, 0x2BADB002

/* Report boot stage `n` on the POST port (clobbers AL). */
.macro STAGE n
    mov $\n, %al
    out %al, $0x80
.endm

    .text
    .globl main
main:
    push %rbx
    STAGE 1
    PRINT "kemu demo: entered via multiboot in 32-bit protected mode"
    cmpl $MULTIBOOT_BOOTLOADER_MAGIC, mb_magic(%rip)
    je 1f
    PRINT " (but EAX was 0x"
    mov mb_magic(%rip), %edi
    mov $8, %esi
    call serial_print_hex
    PRINT ", not 0x2badb002)"
1:  STAGE 2
    PRINT "\nkemu demo: enabled PAE paging (4 GiB identity-mapped with 2 MiB pages) and long mode\n"
    PRINT "kemu demo: now in 64-bit long mode\n"

    STAGE 3
    call acpi_find_rsdp
    test %rax, %rax
    jnz 2f
    PRINT "kemu demo: no ACPI RSDP in 0xe0000-0xfffff\n"
    jmp 3f
2:  PRINT "kemu demo: found the ACPI RSDP (\"RSD PTR \") in 0xe0000-0xfffff\n"
    call acpi_count_cpus
    mov %rax, %rbx
    test %rax, %rax
    jnz 4f
    PRINT "kemu demo: no MADT (\"APIC\") among the ACPI tables\n"
    jmp 3f
4:  PRINT "kemu demo: the MADT lists "
    mov %rbx, %rdi
    call serial_print_dec
    PRINT " enabled cpu(s)\n"

3:  STAGE 4
    PRINT "kemu demo: dropping to user mode (CPL 3) with SYSRETQ\n"
    lea user_main(%rip), %rdi
    lea message(%rip), %rsi
    call run_user
    mov %rax, %rbx
    STAGE 5
    PRINT "kemu demo: back in kernel mode (CPL 0): the user code's HLT raised #GP\n"
    PRINT "kemu demo: user code ran at CPL "
    mov user_cpl(%rip), %edi
    call serial_print_dec
    PRINT " and computed CRC32(\""
    lea message(%rip), %rdi
    call serial_puts
    PRINT "\") = 0x"
    mov %ebx, %edi
    mov $8, %esi
    call serial_print_hex
    PRINT "\nkemu demo: done\n"

    STAGE 6
    call acpi_poweroff
    lea user_spin(%rip), %rdi        /* an emulator may take a moment to act on the write */
    mov $(1 << 22), %esi
    call run_user
    PRINT "kemu demo: ACPI power-off (port 0x604) did not stop the machine; halting\n"
    pop %rbx
    jmp halt_forever

/* CPL 3: records the privilege level it runs at (the low two bits of CS), then returns the
 * CRC32 (IEEE 802.3, bit by bit) of the NUL-terminated string at RDI. */
user_main:
    mov %cs, %eax
    and $3, %eax
    mov %eax, user_cpl(%rip)
    mov $0xFFFFFFFF, %eax
1:  movzbl (%rdi), %ecx
    test %ecx, %ecx
    jz 4f
    xor %ecx, %eax
    mov $8, %edx
2:  shr $1, %eax
    jnc 3f
    xor $0xEDB88320, %eax
3:  dec %edx
    jnz 2b
    inc %rdi
    jmp 1b
4:  not %eax
    ret

    .section .rodata
message:
    .asciz "The quick brown fox jumps over the lazy dog"

    .data
    .balign 4
user_cpl:
    .long 0xff
