//! The text of `info registers` and `info mtree`, laid out as QEMU's monitor lays them out, from
//! a vCPU's [`VcpuState`] and a power cycle's buses and RAM (`info pci` is in `pci_info`).

use std::fmt::Write as _;

use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use crate::accel::{Segment, VcpuState};
use crate::machine::firmware::{LOW_ALIAS_END, ROM_END, ROM_MAX};
use crate::machine::handle::CycleView;

const EFER_LMA: u64 = 1 << 10;

/// The linear address of the next instruction (CS base + RIP outside 64-bit code), as QEMU's
/// `info cpus` prints `pc`.
pub fn linear_pc(s: &VcpuState) -> u64 {
    if s.code_bitness() == 64 {
        s.rip
    } else {
        s.cs.base.wrapping_add(s.rip) & 0xffff_ffff
    }
}

/// `info registers` for one vCPU: QEMU's 64-bit layout in long mode, its 32-bit one otherwise.
/// (QEMU's `II`, `A20`, `SMM`, `HLT`, debug registers and FPU lines are not shown: the state
/// the accelerators hand over does not carry them.)
pub fn registers(s: &VcpuState) -> String {
    let long = s.efer & EFER_LMA != 0;
    let g = &s.gpr;
    let mut o = String::new();
    let f = s.rflags;
    let flag = |bit: u32, c: char| if f & (1 << bit) != 0 { c } else { '-' };
    let flags: String = [
        flag(10, 'D'),
        flag(11, 'O'),
        flag(7, 'S'),
        flag(6, 'Z'),
        flag(4, 'A'),
        flag(2, 'P'),
        flag(0, 'C'),
    ]
    .iter()
    .collect();
    if long {
        let names = [
            ("RAX", 0),
            ("RBX", 3),
            ("RCX", 1),
            ("RDX", 2),
            ("RSI", 6),
            ("RDI", 7),
            ("RBP", 5),
            ("RSP", 4),
            ("R8 ", 8),
            ("R9 ", 9),
            ("R10", 10),
            ("R11", 11),
            ("R12", 12),
            ("R13", 13),
            ("R14", 14),
            ("R15", 15),
        ];
        for row in names.chunks(4) {
            let line: Vec<String> = row
                .iter()
                .map(|(n, i)| format!("{n}={:016x}", g[*i]))
                .collect();
            let _ = writeln!(o, "{}", line.join(" "));
        }
        let _ = writeln!(
            o,
            "RIP={:016x} RFL={:08x} [{flags}] CPL={}",
            s.rip,
            f,
            s.cpl()
        );
    } else {
        let names = [
            ("EAX", 0),
            ("EBX", 3),
            ("ECX", 1),
            ("EDX", 2),
            ("ESI", 6),
            ("EDI", 7),
            ("EBP", 5),
            ("ESP", 4),
        ];
        for row in names.chunks(4) {
            let line: Vec<String> = row
                .iter()
                .map(|(n, i)| format!("{n}={:08x}", g[*i] as u32))
                .collect();
            let _ = writeln!(o, "{}", line.join(" "));
        }
        let _ = writeln!(
            o,
            "EIP={:08x} EFL={:08x} [{flags}] CPL={}",
            s.rip as u32,
            f as u32,
            s.cpl()
        );
    }
    let pe = s.cr0 & 1 != 0;
    for (name, seg) in [
        ("ES =", &s.es),
        ("CS =", &s.cs),
        ("SS =", &s.ss),
        ("DS =", &s.ds),
        ("FS =", &s.fs),
        ("GS =", &s.gs),
        ("LDT=", &s.ldt),
        ("TR =", &s.tr),
    ] {
        let _ = writeln!(o, "{}", segment_line(name, seg, long, pe));
    }
    for (name, t) in [("GDT=", &s.gdt), ("IDT=", &s.idt)] {
        if long {
            let _ = writeln!(o, "{name}     {:016x} {:08x}", t.base, t.limit);
        } else {
            let _ = writeln!(o, "{name}     {:08x} {:08x}", t.base as u32, t.limit);
        }
    }
    if long {
        let _ = writeln!(
            o,
            "CR0={:08x} CR2={:016x} CR3={:016x} CR4={:08x}",
            s.cr0 as u32, s.cr2, s.cr3, s.cr4 as u32
        );
    } else {
        let _ = writeln!(
            o,
            "CR0={:08x} CR2={:08x} CR3={:08x} CR4={:08x}",
            s.cr0 as u32, s.cr2 as u32, s.cr3 as u32, s.cr4 as u32
        );
    }
    let _ = writeln!(o, "EFER={:016x}", s.efer);
    o
}

/// One segment line: selector, base, limit, the descriptor's flag dword and, in protected
/// mode, QEMU's description (`DPL=0 CS64 [-RA]`).
fn segment_line(name: &str, seg: &Segment, long: bool, pe: bool) -> String {
    let flags = u32::from(seg.access_rights()) << 8;
    let mut line = if long {
        format!(
            "{name}{:04x} {:016x} {:08x} {:08x}",
            seg.selector, seg.base, seg.limit, flags
        )
    } else {
        format!(
            "{name}{:04x} {:08x} {:08x} {:08x}",
            seg.selector, seg.base as u32, seg.limit, flags
        )
    };
    if !pe || !seg.present {
        return line;
    }
    let _ = write!(line, " DPL={} ", seg.dpl);
    let t = seg.type_;
    if seg.s {
        let c = |bit: u8, ch: char| if t & bit != 0 { ch } else { '-' };
        if t & 8 != 0 {
            let kind = if seg.l {
                "CS64"
            } else if seg.db {
                "CS32"
            } else {
                "CS16"
            };
            let _ = write!(line, "{kind} [{}{}{}]", c(4, 'C'), c(2, 'R'), c(1, 'A'));
        } else {
            let kind = if seg.db { "DS  " } else { "DS16" };
            let _ = write!(line, "{kind} [{}{}{}]", c(4, 'E'), c(2, 'W'), c(1, 'A'));
        }
    } else {
        let names64 = [
            "Reserved",
            "Reserved",
            "LDT",
            "Reserved",
            "Reserved",
            "Reserved",
            "Reserved",
            "Reserved",
            "Reserved",
            "TSS64-avl",
            "Reserved",
            "TSS64-busy",
            "CallGate64",
            "Reserved",
            "IntGate64",
            "TrapGate64",
        ];
        let names32 = [
            "Reserved",
            "TSS16-avl",
            "LDT",
            "TSS16-busy",
            "CallGate16",
            "TaskGate",
            "IntGate16",
            "TrapGate16",
            "Reserved",
            "TSS32-avl",
            "Reserved",
            "TSS32-busy",
            "CallGate32",
            "Reserved",
            "IntGate32",
            "TrapGate32",
        ];
        let names = if long { &names64 } else { &names32 };
        line.push_str(names[usize::from(t & 0xf)]);
    }
    line
}

/// A name for a port or MMIO range the PC model puts at a fixed place.
fn range_name(io: bool, base: u64) -> &'static str {
    if io {
        match base {
            0x20 | 0xa0 => "pic",
            0x40 => "pit",
            0x60 | 0x64 => "i8042",
            0x61 => "port61",
            0x70 => "rtc (cmos)",
            0x80 => "post (port 0x80)",
            0xe0 | 0x2000 => "pc-testdev",
            0xe9 | 0x402 => "isa-debugcon",
            0xf4 => "isa-debug-exit",
            0x3f8 => "serial (COM1)",
            0x4d0 => "elcr",
            0x510 => "fw_cfg",
            0x600 => "acpi-pm",
            0xcf8 => "pci-conf (+ reset control 0xcf9)",
            0xc000 => "pci-testdev bar1",
            _ => "device",
        }
    } else {
        match base {
            0xfec0_0000 => "ioapic",
            0xfebf_0000 => "pci-testdev bar0",
            0xc000_0000 => "pci-hole (PCI BARs)",
            0xff00_0000 => "pc-testdev iomem",
            b if b >= ROM_END - ROM_MAX => "rom (firmware)",
            b if b < LOW_ALIAS_END => "rom (firmware, low alias)",
            _ => "device",
        }
    }
}

/// `info mtree`: guest RAM (and the ROM slot under KVM), the MMIO bus, the port bus.
pub fn mtree(c: &CycleView) -> String {
    let mut o = String::from("address-space: memory\n");
    let _ = writeln!(
        o,
        "  0000000000000000-ffffffffffffffff (prio 0, i/o): system"
    );
    let mut rows: Vec<(u64, u64, &str, &str)> = Vec::new();
    for r in c.ram.iter() {
        let start = r.start_addr().0;
        let len = r.len();
        let name = if (ROM_END - ROM_MAX..ROM_END).contains(&start) {
            "rom (firmware)"
        } else if start == 0 {
            "ram-below-4g"
        } else {
            "ram-above-4g"
        };
        let kind = if name.starts_with("rom") {
            "rom"
        } else {
            "ram"
        };
        rows.push((start, len, kind, name));
    }
    for (base, len) in c.io.mmio.ranges() {
        rows.push((base, len, "i/o", range_name(false, base)));
    }
    if c.io.lapics.is_some() {
        rows.push((
            crate::devices::lapic::LAPIC_BASE,
            crate::devices::lapic::LAPIC_LEN,
            "i/o",
            "lapic",
        ));
    }
    rows.sort_by_key(|r| r.0);
    for (base, len, kind, name) in rows {
        let end = base.saturating_add(len.saturating_sub(1));
        let _ = writeln!(o, "    {base:016x}-{end:016x} (prio 0, {kind}): {name}");
    }
    o.push_str("\naddress-space: I/O\n");
    o.push_str("  0000000000000000-000000000000ffff (prio 0, i/o): io\n");
    for (base, len) in c.io.pio.ranges() {
        let end = base.saturating_add(len.saturating_sub(1));
        let _ = writeln!(
            o,
            "    {base:016x}-{end:016x} (prio 0, i/o): {}",
            range_name(true, base)
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_at_reset_look_like_qemus() {
        let r = registers(&VcpuState::reset());
        assert!(r.starts_with("EAX=00000000 EBX=00000000 ECX=00000000 EDX=00000000\n"));
        assert!(r.contains("EIP=0000fff0 EFL=00000002 [-------] CPL=0\n"));
        assert!(r.contains("CS =f000 ffff0000 0000ffff 00009b00\n"), "{r}");
        assert!(r.contains("CR0=60000010 CR2=00000000 CR3=00000000 CR4=00000000\n"));
        assert_eq!(linear_pc(&VcpuState::reset()), 0xffff_fff0);
    }

    #[test]
    fn long_mode_registers_use_the_64_bit_layout() {
        let mut s = VcpuState::reset();
        s.cr0 = 0x8000_0011;
        s.efer = 0x500;
        s.cs = Segment::flat(0x10, 0xb, true);
        s.rip = 0xffff_ffff_8100_0000;
        s.rflags = 0x246;
        s.gpr[0] = 0x1122_3344_5566_7788;
        let r = registers(&s);
        assert!(r.starts_with("RAX=1122334455667788 RBX="), "{r}");
        assert!(r.contains("RIP=ffffffff81000000 RFL=00000246 [---Z-P-] CPL=0\n"));
        assert!(r.contains("CS =0010 0000000000000000 ffffffff 00a09b00 DPL=0 CS64 [-RA]"));
        assert!(r.contains("EFER=0000000000000500"));
    }
}
