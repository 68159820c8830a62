/* powerbtn: the ACPI power button, as the monitor's `system_powerdown` presses it.
 * Sets PWRBTN_EN in PM1_EN (0x602), then polls PM1_STS (0x600) for PWRBTN_STS (bit 8), with a
 * delay loop between reads so a waiting guest costs few exits. When it is set: prints a line,
 * clears it (write 1 to clear) and enters S5 through PM1a_CNT (SLP_TYP 0 = the DSDT's _S5,
 * | SLP_EN): the emulator exits with status 0. The SCI stays masked (8259s masked, IF=0): the
 * guest only polls. Runs until the button is pressed. */
    .include "lib/common.inc"

    .set PM1_STS, 0x600
    .set PM1_EN, 0x602
    .set PWRBTN, 0x100

    .text
    .globl main
main:
    PRINT "powerbtn: waiting for the power button\n"
    mov $PM1_EN, %edx
    mov $PWRBTN, %eax
    out %ax, %dx
1:  mov $100000, %ecx
2:  dec %ecx
    jnz 2b
    mov $PM1_STS, %edx
    in %dx, %ax
    test $PWRBTN, %ax
    jz 1b
    PRINT "powerbtn: power button pressed, powering off\n"
    mov $PM1_STS, %edx
    mov $PWRBTN, %eax
    out %ax, %dx
    call acpi_poweroff
    /* Still running: the power-off did not take. */
    mov $1, %eax
    ret
