//! kemu's gdb architecture: the x86-64 register set gdb knows (core, x87, SSE, FS/GS base)
//! plus the control registers and EFER, described by our own target XML, and the `g`-packet
//! layout that follows the XML's register order.
//!
//! gdb numbers the registers in XML order: rax rbx rcx rdx rsi rdi rbp rsp r8..r15 (0..15),
//! rip, eflags, cs ss ds es fs gs, st0..st7, fctrl fstat ftag fiseg fioff foseg fooff fop,
//! xmm0..xmm15, mxcsr, fs_base gs_base, cr0 cr2 cr3 cr4 cr8 efer. The architecture is
//! `i386:x86-64` whatever mode the guest is in: for 16/32-bit code use `set architecture
//! i8086` / `i386` in gdb (for disassembly; registers keep their 64-bit layout).

use gdbstub::arch::{Arch, Registers};

/// kemu's x86-64 as gdbstub sees it.
pub enum KemuX86_64 {}

impl Arch for KemuX86_64 {
    type Usize = u64;
    type Registers = X86Regs;
    type BreakpointKind = usize;
    type RegId = ();

    fn target_description_xml() -> Option<&'static str> {
        Some(TARGET_XML)
    }
}

/// Index into [`X86Regs::gpr`] of each general register in gdb's order (rax rbx rcx rdx rsi
/// rdi rbp rsp r8..r15), given as the x86 encoding number that `VcpuState::gpr` uses.
pub const GDB_GPR_ORDER: [usize; 16] = [0, 3, 1, 2, 6, 7, 5, 4, 8, 9, 10, 11, 12, 13, 14, 15];

/// Every register gdb transfers, in gdb's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct X86Regs {
    /// General registers in gdb's order (see [`GDB_GPR_ORDER`]).
    pub gpr: [u64; 16],
    /// RIP.
    pub rip: u64,
    /// EFLAGS (gdb's register is 32 bits).
    pub eflags: u32,
    /// Selectors of CS, SS, DS, ES, FS, GS.
    pub seg: [u32; 6],
    /// ST(0)..ST(7), 80-bit little-endian.
    pub st: [[u8; 10]; 8],
    /// fctrl, fstat, ftag, fiseg, fioff, foseg, fooff, fop.
    pub x87: [u32; 8],
    /// XMM0..XMM15.
    pub xmm: [u128; 16],
    /// MXCSR.
    pub mxcsr: u32,
    /// FS base.
    pub fs_base: u64,
    /// GS base.
    pub gs_base: u64,
    /// CR0, CR2, CR3, CR4, CR8.
    pub cr: [u64; 5],
    /// IA32_EFER.
    pub efer: u64,
}

/// Size of a `g` packet's payload in bytes.
const G_BYTES: usize = 16 * 8 + 8 + 4 + 6 * 4 + 8 * 10 + 8 * 4 + 16 * 16 + 4 + 2 * 8 + 6 * 8;

impl Registers for X86Regs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        self.rip
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        let mut out = |bytes: &[u8]| bytes.iter().for_each(|&b| write_byte(Some(b)));
        self.gpr.iter().for_each(|r| out(&r.to_le_bytes()));
        out(&self.rip.to_le_bytes());
        out(&self.eflags.to_le_bytes());
        self.seg.iter().for_each(|r| out(&r.to_le_bytes()));
        self.st.iter().for_each(|r| out(r));
        self.x87.iter().for_each(|r| out(&r.to_le_bytes()));
        self.xmm.iter().for_each(|r| out(&r.to_le_bytes()));
        out(&self.mxcsr.to_le_bytes());
        out(&self.fs_base.to_le_bytes());
        out(&self.gs_base.to_le_bytes());
        self.cr.iter().for_each(|r| out(&r.to_le_bytes()));
        out(&self.efer.to_le_bytes());
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        if bytes.len() < G_BYTES {
            return Err(());
        }
        let mut r = Reader(bytes);
        for g in self.gpr.iter_mut() {
            *g = r.u64();
        }
        self.rip = r.u64();
        self.eflags = r.u32();
        for s in self.seg.iter_mut() {
            *s = r.u32();
        }
        for st in self.st.iter_mut() {
            st.copy_from_slice(r.take(10));
        }
        for x in self.x87.iter_mut() {
            *x = r.u32();
        }
        for x in self.xmm.iter_mut() {
            let mut b = [0u8; 16];
            b.copy_from_slice(r.take(16));
            *x = u128::from_le_bytes(b);
        }
        self.mxcsr = r.u32();
        self.fs_base = r.u64();
        self.gs_base = r.u64();
        for c in self.cr.iter_mut() {
            *c = r.u64();
        }
        self.efer = r.u64();
        Ok(())
    }
}

/// Little-endian fields off the front of a checked-long-enough buffer.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8));
        u64::from_le_bytes(b)
    }
    fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4));
        u32::from_le_bytes(b)
    }
}

/// The target description gdb fetches with `qXfer:features:read`.
const TARGET_XML: &str = r#"<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
<architecture>i386:x86-64</architecture>
<feature name="org.gnu.gdb.i386.core">
<flags id="i386_eflags" size="4">
<field name="CF" start="0" end="0"/><field name="" start="1" end="1"/>
<field name="PF" start="2" end="2"/><field name="AF" start="4" end="4"/>
<field name="ZF" start="6" end="6"/><field name="SF" start="7" end="7"/>
<field name="TF" start="8" end="8"/><field name="IF" start="9" end="9"/>
<field name="DF" start="10" end="10"/><field name="OF" start="11" end="11"/>
<field name="NT" start="14" end="14"/><field name="RF" start="16" end="16"/>
<field name="VM" start="17" end="17"/><field name="AC" start="18" end="18"/>
<field name="VIF" start="19" end="19"/><field name="VIP" start="20" end="20"/>
<field name="ID" start="21" end="21"/>
</flags>
<reg name="rax" bitsize="64" type="int64"/>
<reg name="rbx" bitsize="64" type="int64"/>
<reg name="rcx" bitsize="64" type="int64"/>
<reg name="rdx" bitsize="64" type="int64"/>
<reg name="rsi" bitsize="64" type="int64"/>
<reg name="rdi" bitsize="64" type="int64"/>
<reg name="rbp" bitsize="64" type="data_ptr"/>
<reg name="rsp" bitsize="64" type="data_ptr"/>
<reg name="r8" bitsize="64" type="int64"/>
<reg name="r9" bitsize="64" type="int64"/>
<reg name="r10" bitsize="64" type="int64"/>
<reg name="r11" bitsize="64" type="int64"/>
<reg name="r12" bitsize="64" type="int64"/>
<reg name="r13" bitsize="64" type="int64"/>
<reg name="r14" bitsize="64" type="int64"/>
<reg name="r15" bitsize="64" type="int64"/>
<reg name="rip" bitsize="64" type="code_ptr"/>
<reg name="eflags" bitsize="32" type="i386_eflags"/>
<reg name="cs" bitsize="32" type="int32"/>
<reg name="ss" bitsize="32" type="int32"/>
<reg name="ds" bitsize="32" type="int32"/>
<reg name="es" bitsize="32" type="int32"/>
<reg name="fs" bitsize="32" type="int32"/>
<reg name="gs" bitsize="32" type="int32"/>
<reg name="st0" bitsize="80" type="i387_ext"/>
<reg name="st1" bitsize="80" type="i387_ext"/>
<reg name="st2" bitsize="80" type="i387_ext"/>
<reg name="st3" bitsize="80" type="i387_ext"/>
<reg name="st4" bitsize="80" type="i387_ext"/>
<reg name="st5" bitsize="80" type="i387_ext"/>
<reg name="st6" bitsize="80" type="i387_ext"/>
<reg name="st7" bitsize="80" type="i387_ext"/>
<reg name="fctrl" bitsize="32" type="int" group="float"/>
<reg name="fstat" bitsize="32" type="int" group="float"/>
<reg name="ftag" bitsize="32" type="int" group="float"/>
<reg name="fiseg" bitsize="32" type="int" group="float"/>
<reg name="fioff" bitsize="32" type="int" group="float"/>
<reg name="foseg" bitsize="32" type="int" group="float"/>
<reg name="fooff" bitsize="32" type="int" group="float"/>
<reg name="fop" bitsize="32" type="int" group="float"/>
</feature>
<feature name="org.gnu.gdb.i386.sse">
<vector id="v4f" type="ieee_single" count="4"/>
<vector id="v2d" type="ieee_double" count="2"/>
<vector id="v16i8" type="int8" count="16"/>
<vector id="v8i16" type="int16" count="8"/>
<vector id="v4i32" type="int32" count="4"/>
<vector id="v2i64" type="int64" count="2"/>
<union id="vec128">
<field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/>
<field name="v16_int8" type="v16i8"/><field name="v8_int16" type="v8i16"/>
<field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/>
<field name="uint128" type="uint128"/>
</union>
<reg name="xmm0" bitsize="128" type="vec128"/>
<reg name="xmm1" bitsize="128" type="vec128"/>
<reg name="xmm2" bitsize="128" type="vec128"/>
<reg name="xmm3" bitsize="128" type="vec128"/>
<reg name="xmm4" bitsize="128" type="vec128"/>
<reg name="xmm5" bitsize="128" type="vec128"/>
<reg name="xmm6" bitsize="128" type="vec128"/>
<reg name="xmm7" bitsize="128" type="vec128"/>
<reg name="xmm8" bitsize="128" type="vec128"/>
<reg name="xmm9" bitsize="128" type="vec128"/>
<reg name="xmm10" bitsize="128" type="vec128"/>
<reg name="xmm11" bitsize="128" type="vec128"/>
<reg name="xmm12" bitsize="128" type="vec128"/>
<reg name="xmm13" bitsize="128" type="vec128"/>
<reg name="xmm14" bitsize="128" type="vec128"/>
<reg name="xmm15" bitsize="128" type="vec128"/>
<reg name="mxcsr" bitsize="32" type="int" group="vector"/>
</feature>
<feature name="org.gnu.gdb.i386.segments">
<reg name="fs_base" bitsize="64" type="int"/>
<reg name="gs_base" bitsize="64" type="int"/>
</feature>
<feature name="org.kemu.x86.system">
<reg name="cr0" bitsize="64" type="int" group="system"/>
<reg name="cr2" bitsize="64" type="int" group="system"/>
<reg name="cr3" bitsize="64" type="int" group="system"/>
<reg name="cr4" bitsize="64" type="int" group="system"/>
<reg name="cr8" bitsize="64" type="int" group="system"/>
<reg name="efer" bitsize="64" type="int" group="system"/>
</feature>
</target>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g_packet_round_trip_and_size() {
        let mut r = X86Regs::default();
        r.gpr[0] = 0x1122_3344_5566_7788;
        r.rip = 0x10_0000;
        r.eflags = 0x202;
        r.seg[0] = 0x8;
        r.st[7] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        r.x87[0] = 0x37f;
        r.xmm[15] = u128::MAX - 5;
        r.mxcsr = 0x1f80;
        r.cr[2] = 0xdead_b000;
        r.efer = 0x500;
        let mut bytes = Vec::new();
        r.gdb_serialize(|b| bytes.push(b.unwrap_or(0)));
        assert_eq!(bytes.len(), G_BYTES);
        assert_eq!(&bytes[..8], &0x1122_3344_5566_7788u64.to_le_bytes());
        let mut back = X86Regs::default();
        back.gdb_deserialize(&bytes).unwrap();
        assert_eq!(back, r);
        assert!(back.gdb_deserialize(&bytes[..G_BYTES - 1]).is_err());
    }

    #[test]
    fn xml_lists_every_register_once() {
        let regs = TARGET_XML.matches("<reg ").count();
        assert_eq!(regs, 16 + 1 + 1 + 6 + 8 + 8 + 16 + 1 + 2 + 6);
        let order: Vec<usize> = (0..16).map(|i| GDB_GPR_ORDER[i]).collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..16).collect::<Vec<_>>());
    }
}
