/* paging: 4-level paging as the CPU walks it. A 4 KiB page table at virtual 1 GiB (pd[512])
 * holds one page per check; each #PF is caught (lib/catch.inc) and printed with its error code
 * (P=1 W=2 U=4 RSVD=8 I/D=0x10), CR2 and whether RIP is the faulting instruction:
 *   page 0  not present, read at CPL 0                      -> error 0x0
 *   page 1  read-only, written at CPL 0 with CR0.WP=1       -> error 0x3; with WP=0 the write
 *           goes through (value read back)
 *   page 2  supervisor, read at CPL 3                       -> error 0x5
 *   page 3  NX (EFER.NXE=1), called at CPL 0                -> error 0x11
 *   page 4  a reserved physical-address bit (51) set        -> error 0x9
 *   page 5  A and D start clear: a read sets A (and the PDE's A), a write sets D
 *   page 6  remapped to another frame: after INVLPG the new frame's value is read
 *   page 7  a 4 KiB alias of a data word; pd[513] a 2 MiB alias of physical 0..2 MiB (its A and
 *           D bits after a read and a write are printed too)
 *   page 8  read-only, written at CPL 3                      -> error 0x7
 *   page 9/10  a read crossing into not-present page 10      -> CR2 = page 10's start
 *   page 11 A and D clear, written first: both set
 *   pd[514..516] over pt2: a read-only PDE (write -> 0x3), a supervisor PDE (CPL 3 read ->
 *           0x5), an NX PDE (fetch -> 0x11), the PTEs below all P|RW|US; the NX page fetched
 *           at CPL 3 -> 0x15
 * Whether a stale translation is used without INVLPG is left open (either is allowed), and
 * global pages across a CR3 reload are not checked (not portable). */
    .include "lib/common.inc"
    .include "lib/catch.inc"

    .set VA, 0x40000000
    .set VA_2M, 0x40200000
    .set nx_page, VA + 0x3000
    .set VA_PDE_RO, 0x40400000       /* pd[514] */
    .set VA_PDE_SUP, 0x40600000      /* pd[515] */
    .set pde_nx_page, 0x40801000     /* pd[516], pt2[1] */
    .set MSR_EFER_NXE, 1 << 11
    .set CR0_WP, 1 << 16
    .set PTE_A, 1 << 5
    .set PTE_D, 1 << 6
    .set PTE_URW, PTE_P | PTE_RW | PTE_US

.macro CHECK text, fn, rip
    PRINT "paging: \text: "
    lea \fn(%rip), %rdi
    xor %esi, %esi
    call catch_call
    PRINT "cr2 0x"
    mov caught_cr2(%rip), %rdi
    mov $8, %esi
    call serial_print_hex
    PRINT ", "
    mov $\rip, %rdi
    call catch_report
    add %eax, %ebx
.endm

/* PTE n of pt := frame | flags (frame: a symbol) */
.macro MAP n, frame, flags
    lea \frame(%rip), %rax
    or $\flags, %rax
    mov %rax, pt + \n * 8(%rip)
.endm

    .text
    .globl main
main:
    push %rbx
    push %r12
    xor %ebx, %ebx
    mov $14, %edi
    call catch_gate

    lea pt(%rip), %rdi               /* .bss is not zeroed for us */
    xor %ecx, %ecx
1:  movq $0, (%rdi, %rcx, 8)
    inc %ecx
    cmp $1024, %ecx                  /* the table and the first frame */
    jne 1b
    MAP 0, frame0, PTE_RW | PTE_US   /* not present */
    MAP 1, frame0, PTE_P | PTE_US    /* read-only */
    MAP 2, frame0, PTE_P | PTE_RW    /* supervisor */
    MAP 3, ret_frame, PTE_URW
    btsq $63, pt + 3 * 8(%rip)       /* NX */
    MAP 4, frame0, PTE_URW
    btsq $51, pt + 4 * 8(%rip)       /* reserved (MAXPHYADDR < 52) */
    MAP 5, frame0, PTE_URW           /* A and D clear */
    MAP 6, frame_e, PTE_URW
    MAP 7, frame0, PTE_URW
    MAP 8, frame0, PTE_P | PTE_US    /* read-only, for CPL 3 */
    MAP 9, frame0, PTE_URW           /* page 10 stays not present */
    MAP 11, frame0, PTE_URW          /* A and D clear, written first */
    lea pt2(%rip), %rdi              /* pt2: only entries 0 and 1 */
    xor %ecx, %ecx
2:  movq $0, (%rdi, %rcx, 8)
    inc %ecx
    cmp $512, %ecx
    jne 2b
    lea frame0(%rip), %rax
    or $PTE_URW, %rax
    mov %rax, (%rdi)
    lea ret_frame(%rip), %rax
    or $PTE_URW, %rax
    mov %rax, 8(%rdi)
    mov %rdi, %rax                   /* pt2 under three restricted PDEs */
    or $(PTE_P | PTE_US), %rax       /* pd[514]: read-only */
    mov %rax, pd + 514 * 8(%rip)
    mov %rdi, %rax
    or $(PTE_P | PTE_RW), %rax       /* pd[515]: supervisor */
    mov %rax, pd + 515 * 8(%rip)
    mov %rdi, %rax
    or $PTE_URW, %rax                /* pd[516]: NX */
    bts $63, %rax
    mov %rax, pd + 516 * 8(%rip)
    lea pt(%rip), %rax               /* pd[512] -> pt, A clear; pd[513]: 2 MiB of physical 0 */
    or $PTE_URW, %rax
    mov %rax, pd + 512 * 8(%rip)
    movq $(PTE_URW | PTE_PS), pd + 513 * 8(%rip)
    movb $0xc3, ret_frame(%rip)      /* RET */
    movl $0xe0e0e0e0, frame_e(%rip)
    movl $0xf0f0f0f0, frame_f(%rip)
    movq $0x12345678, frame0 + 0x18(%rip)
    mov $MSR_EFER, %ecx
    rdmsr
    or $MSR_EFER_NXE, %eax
    wrmsr
    mov %cr0, %rax
    or $CR0_WP, %rax
    mov %rax, %cr0
    mov %cr3, %rax
    mov %rax, %cr3

    CHECK "not present, read", do_np, np_insn
    CHECK "read-only, write with CR0.WP=1", do_ro, ro_insn
    mov %cr0, %rax                   /* WP=0: CPL 0 may write read-only pages */
    and $~CR0_WP, %rax
    mov %rax, %cr0
    movq $0xabcd, VA + 0x1008
    mov %cr0, %rax
    or $CR0_WP, %rax
    mov %rax, %cr0
    PRINT "paging: read-only, write with CR0.WP=0: value 0x"
    mov frame0 + 8(%rip), %rdi
    mov $8, %esi
    call serial_print_hex
    PRINT "\n"
    CHECK "supervisor page, read at CPL 3", do_user, user_insn
    CHECK "NX page, fetch", do_nx, nx_page
    CHECK "reserved bit 51, read", do_rsvd, rsvd_insn

    CHECK "read-only page, write at CPL 3", do_user_ro, user_ro_insn
    CHECK "read-only PDE over a writable PTE, write", do_pde_ro, pde_ro_insn
    CHECK "supervisor PDE over a user PTE, read at CPL 3", do_pde_user, pde_user_insn
    CHECK "NX PDE, fetch", do_pde_nx, pde_nx_page
    CHECK "NX page, fetch at CPL 3", do_user_nx, nx_page
    CHECK "page-crossing read into a not-present page", do_cross, cross_insn

    movq $2, VA + 0xb020             /* a write with A and D clear sets both */
    PRINT "paging: after a first write: PTE A/D 0x"
    mov pt + 11 * 8(%rip), %rdi
    and $(PTE_A | PTE_D), %edi
    mov $2, %esi
    call serial_print_hex
    lea frame0 + 0x18(%rip), %rax    /* the 2 MiB page's PDE: A on a read, D on a write */
    mov VA_2M(%rax), %rax
    PRINT ", 2 MiB PDE after a read 0x"
    mov pd + 513 * 8(%rip), %rdi
    and $(PTE_A | PTE_D), %edi
    mov $2, %esi
    call serial_print_hex
    lea frame0 + 0x30(%rip), %rax
    movq $3, VA_2M(%rax)
    PRINT ", after a write 0x"
    mov pd + 513 * 8(%rip), %rdi
    and $(PTE_A | PTE_D), %edi
    mov $2, %esi
    call serial_print_hex
    PRINT "\n"

    mov VA + 0x5018, %r12            /* A and D */
    PRINT "paging: after a read: PTE A/D 0x"
    mov pt + 5 * 8(%rip), %rdi
    and $(PTE_A | PTE_D), %edi
    mov $2, %esi
    call serial_print_hex
    PRINT ", PDE A 0x"
    mov pd + 512 * 8(%rip), %rdi
    and $PTE_A, %edi
    mov $2, %esi
    call serial_print_hex
    movq $1, VA + 0x5020
    PRINT ", after a write: PTE A/D 0x"
    mov pt + 5 * 8(%rip), %rdi
    and $(PTE_A | PTE_D), %edi
    mov $2, %esi
    call serial_print_hex
    PRINT ", value read 0x"
    mov %r12, %rdi
    mov $8, %esi
    call serial_print_hex
    PRINT "\n"

    mov VA + 0x6000, %r12            /* INVLPG */
    MAP 6, frame_f, PTE_URW
    invlpg VA + 0x6000
    PRINT "paging: before remapping 0x"
    mov %r12, %rdi
    mov $8, %esi
    call serial_print_hex
    PRINT ", after remapping + INVLPG 0x"
    mov VA + 0x6000, %rdi
    mov $8, %esi
    call serial_print_hex
    PRINT "\n"

    PRINT "paging: 4 KiB alias 0x"
    mov VA + 0x7018, %rdi
    mov $8, %esi
    call serial_print_hex
    PRINT ", 2 MiB alias 0x"
    lea frame0 + 0x18(%rip), %rax
    mov VA_2M(%rax), %rdi
    mov $8, %esi
    call serial_print_hex
    PRINT "\n"

    PRINT "paging: "
    mov %ebx, %edi
    call serial_print_dec
    PRINT " failed\n"
    mov %ebx, %eax
    pop %r12
    pop %rbx
    ret

do_np:
np_insn:
    mov VA + 0x10, %rax
    ret
do_ro:
ro_insn:
    movq $1, VA + 0x1008
    ret
do_user:
    lea user_read(%rip), %rdi
    jmp run_user
user_read:                           /* CPL 3 */
user_insn:
    mov VA + 0x2020, %rax
    ret
do_nx:
    mov $VA + 0x3000, %rax
    call *%rax
    ret
do_user_ro:
    lea user_ro(%rip), %rdi
    jmp run_user
user_ro:                             /* CPL 3 */
user_ro_insn:
    movq $1, VA + 0x8010
    ret
do_pde_ro:
pde_ro_insn:
    movq $1, VA_PDE_RO + 0x10
    ret
do_pde_user:
    lea user_pde(%rip), %rdi
    jmp run_user
user_pde:                            /* CPL 3 */
pde_user_insn:
    mov VA_PDE_SUP + 0x10, %rax
    ret
do_pde_nx:
    mov $pde_nx_page, %rax
    call *%rax
    ret
do_user_nx:
    lea user_nx(%rip), %rdi
    jmp run_user
user_nx:                             /* CPL 3 */
    mov $nx_page, %rax
    call *%rax
    ret
do_cross:
cross_insn:
    mov VA + 0x9ffc, %rax            /* 4 bytes in page 9, 4 in page 10 */
    ret

do_rsvd:
rsvd_insn:
    mov VA + 0x4028, %rax
    ret

    .bss
    .balign 4096
pt:
    .skip 4096
frame0:
    .skip 4096
ret_frame:
    .skip 4096
frame_e:
    .skip 4096
frame_f:
    .skip 4096
pt2:
    .skip 4096
    .text
