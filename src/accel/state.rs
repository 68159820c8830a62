//! The architectural register state of one vCPU, independent of who runs it.
//!
//! The machine's boot code fills one in for the entry point of the image it loaded; the KVM
//! backend converts it to and from `kvm_regs`/`kvm_sregs`, the software CPU loads it into its
//! `CpuState`. The same struct serves reports, the gdbstub and snapshots.

/// A segment register with its hidden descriptor cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment {
    /// The visible selector.
    pub selector: u16,
    /// Cached base address.
    pub base: u64,
    /// Cached limit in bytes (already scaled by the granularity bit).
    pub limit: u32,
    /// Descriptor type field (4 bits).
    pub type_: u8,
    /// S bit: 1 for code/data, 0 for system segments.
    pub s: bool,
    /// Descriptor privilege level.
    pub dpl: u8,
    /// Present bit.
    pub present: bool,
    /// AVL bit.
    pub avl: bool,
    /// L bit: 64-bit code segment.
    pub l: bool,
    /// D/B bit: 32-bit default operand size / stack.
    pub db: bool,
    /// G bit: limit granularity is 4 KiB.
    pub g: bool,
    /// The segment register holds a null selector / is unusable.
    pub unusable: bool,
}

impl Segment {
    /// A flat 4 GiB segment: `type_` 0xB for code (execute/read, accessed), 0x3 for data.
    pub fn flat(selector: u16, type_: u8, long: bool) -> Self {
        Segment {
            selector,
            base: 0,
            limit: 0xffff_ffff,
            type_,
            s: true,
            dpl: (selector & 3) as u8,
            present: true,
            avl: false,
            l: long,
            db: !long,
            g: true,
            unusable: false,
        }
    }

    /// A real-mode segment: base = selector * 16, 64 KiB limit.
    pub fn real(selector: u16, type_: u8) -> Self {
        Segment {
            selector,
            base: u64::from(selector) << 4,
            limit: 0xffff,
            type_,
            s: true,
            dpl: 0,
            present: true,
            avl: false,
            l: false,
            db: false,
            g: false,
            unusable: false,
        }
    }

    /// The access-rights bits as in a descriptor's bytes 5..6 (type, S, DPL, P, AVL, L, D/B, G).
    pub fn access_rights(&self) -> u16 {
        u16::from(self.type_ & 0xf)
            | u16::from(self.s) << 4
            | u16::from(self.dpl & 3) << 5
            | u16::from(self.present) << 7
            | u16::from(self.avl) << 12
            | u16::from(self.l) << 13
            | u16::from(self.db) << 14
            | u16::from(self.g) << 15
    }
}

/// GDTR or IDTR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DescriptorTable {
    /// Linear base address.
    pub base: u64,
    /// Limit (size - 1).
    pub limit: u16,
}

/// The register state of a vCPU: general registers, segments, system registers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VcpuState {
    /// RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15 in encoding order.
    pub gpr: [u64; 16],
    /// Instruction pointer.
    pub rip: u64,
    /// Flags register (bit 1 always set).
    pub rflags: u64,
    /// CS.
    pub cs: Segment,
    /// DS.
    pub ds: Segment,
    /// ES.
    pub es: Segment,
    /// FS.
    pub fs: Segment,
    /// GS.
    pub gs: Segment,
    /// SS.
    pub ss: Segment,
    /// Task register.
    pub tr: Segment,
    /// LDT register.
    pub ldt: Segment,
    /// GDTR.
    pub gdt: DescriptorTable,
    /// IDTR.
    pub idt: DescriptorTable,
    /// CR0.
    pub cr0: u64,
    /// CR2 (page-fault linear address).
    pub cr2: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// CR8 (task priority).
    pub cr8: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// IA32_APIC_BASE.
    pub apic_base: u64,
}

/// Register indexes into [`VcpuState::gpr`].
pub mod reg {
    /// RAX.
    pub const RAX: usize = 0;
    /// RCX.
    pub const RCX: usize = 1;
    /// RDX.
    pub const RDX: usize = 2;
    /// RBX.
    pub const RBX: usize = 3;
    /// RSP.
    pub const RSP: usize = 4;
    /// RBP.
    pub const RBP: usize = 5;
    /// RSI.
    pub const RSI: usize = 6;
    /// RDI.
    pub const RDI: usize = 7;
}

impl VcpuState {
    /// The state of an x86 CPU after RESET: real mode, CS:IP = F000:FFF0 with CS base
    /// 0xFFFF0000, so the first fetch is at 0xFFFFFFF0.
    pub fn reset() -> Self {
        let data = Segment::real(0, 0x3);
        let mut cs = Segment::real(0xf000, 0xb);
        cs.base = 0xffff_0000;
        VcpuState {
            rip: 0xfff0,
            rflags: 0x2,
            cs,
            ds: data,
            es: data,
            fs: data,
            gs: data,
            ss: data,
            tr: Segment {
                type_: 0xb,
                s: false,
                present: true,
                limit: 0xffff,
                ..Segment::default()
            },
            ldt: Segment {
                type_: 0x2,
                s: false,
                present: true,
                limit: 0xffff,
                ..Segment::default()
            },
            gdt: DescriptorTable {
                base: 0,
                limit: 0xffff,
            },
            idt: DescriptorTable {
                base: 0,
                limit: 0xffff,
            },
            cr0: 0x6000_0010,
            apic_base: 0xfee0_0900,
            ..VcpuState::default()
        }
    }

    /// Current privilege level, from CS (SS.DPL would also do in protected mode).
    pub fn cpl(&self) -> u8 {
        if self.cr0 & 1 == 0 {
            0
        } else {
            self.cs.dpl
        }
    }

    /// A short name for the CPU mode: real, protected (16/32-bit), long (compat/64-bit).
    pub fn mode_name(&self) -> &'static str {
        if self.cr0 & 1 == 0 {
            "real mode"
        } else if self.rflags & (1 << 17) != 0 {
            "virtual-8086 mode"
        } else if self.efer & (1 << 10) != 0 {
            if self.cs.l {
                "long mode (64-bit)"
            } else {
                "long mode (compatibility)"
            }
        } else if self.cs.db {
            "protected mode (32-bit)"
        } else {
            "protected mode (16-bit)"
        }
    }

    /// Code width in bits for decoding at RIP: 16, 32 or 64.
    pub fn code_bitness(&self) -> u32 {
        if self.cr0 & 1 != 0 && self.efer & (1 << 10) != 0 && self.cs.l {
            64
        } else if self.cr0 & 1 != 0 && self.cs.db && self.rflags & (1 << 17) == 0 {
            32
        } else {
            16
        }
    }
}
