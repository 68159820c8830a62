/* modes_tcg: modes.S plus a real-mode INT 0x80 through the IVT and IRET, which /dev/kvm (PVM)
 * does not survive (the run hangs until killed; measured). See modes.S. */
    .set MODES_TCG, 1
    .include "modes.S"
