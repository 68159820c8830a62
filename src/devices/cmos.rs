//! The MC146818 real-time clock and its 128 bytes of CMOS RAM, at [`CMOS_BASE`] (0x70 index, 0x71
//! data; [`CMOS_LEN`] = 2).
//!
//! Data enters as guest port accesses (offset 0: bits 0-6 select a byte, bit 7 masks NMIs; offset
//! 1: read/write the selected byte) and from an injected wall clock (the host's UTC time by
//! default, [`Cmos::with_clock`] for tests). The clock registers are computed from that clock on
//! every read, in BCD or binary and in 24- or 12-hour form as register B asks; a guest that sets
//! the time keeps an offset from the host clock. Update-in-progress never reads as set (a read is
//! always consistent), register D reports valid RAM and time.
//!
//! The memory-size bytes are the ones QEMU's `pc` machine writes and firmware (SeaBIOS, ours)
//! reads: see [`Cmos::new`]. Periodic, alarm and update-ended interrupts are not modelled: the RTC
//! drives no interrupt (ISA IRQ [`RTC_IRQ`] stays low) and register C always reads 0.

use std::time::{SystemTime, UNIX_EPOCH};

use super::BusDevice;

/// First I/O port: index (write) at offset 0, data at offset 1.
pub const CMOS_BASE: u16 = 0x70;
/// Ports decoded.
pub const CMOS_LEN: u64 = 2;
/// The RTC's ISA IRQ (not driven, see the module doc).
pub const RTC_IRQ: u32 = 8;

/// Offset of the index register.
pub const INDEX: u64 = 0;
/// Offset of the data register.
pub const DATA: u64 = 1;
/// Index bit 7: NMI disabled while set.
pub const INDEX_NMI_MASK: u8 = 0x80;

/// Byte: seconds.
pub const REG_SECONDS: u8 = 0x00;
/// Byte: minutes.
pub const REG_MINUTES: u8 = 0x02;
/// Byte: hours (bit 7 = PM in 12-hour mode).
pub const REG_HOURS: u8 = 0x04;
/// Byte: day of week, 1 = Sunday.
pub const REG_WEEKDAY: u8 = 0x06;
/// Byte: day of month.
pub const REG_DAY: u8 = 0x07;
/// Byte: month.
pub const REG_MONTH: u8 = 0x08;
/// Byte: year within the century.
pub const REG_YEAR: u8 = 0x09;
/// Byte: register A (UIP, divider, rate).
pub const REG_A: u8 = 0x0a;
/// Byte: register B (SET, interrupt enables, data mode, 24-hour).
pub const REG_B: u8 = 0x0b;
/// Byte: register C (interrupt flags, read-to-clear).
pub const REG_C: u8 = 0x0c;
/// Byte: register D (valid RAM and time).
pub const REG_D: u8 = 0x0d;
/// Byte: base memory in KiB, low byte (high byte at 0x16).
pub const REG_BASE_MEM: u8 = 0x15;
/// Byte: extended memory above 1 MiB in KiB, low byte (high byte at 0x18).
pub const REG_EXT_MEM: u8 = 0x17;
/// Byte: copy of the extended memory size, low byte (high byte at 0x31).
pub const REG_EXT_MEM2: u8 = 0x30;
/// Byte: century (BCD or binary like the other clock bytes).
pub const REG_CENTURY: u8 = 0x32;
/// Byte: memory between 16 MiB and 4 GiB in 64 KiB units, low byte (high byte at 0x35).
pub const REG_MEM_ABOVE_16M: u8 = 0x34;
/// Byte: memory above 4 GiB in 64 KiB units, three bytes little-endian (0x5b..0x5d).
pub const REG_MEM_ABOVE_4G: u8 = 0x5b;
/// Byte: number of CPUs minus one.
pub const REG_CPUS: u8 = 0x5f;

/// Register A: update in progress (read only, never set here).
pub const A_UIP: u8 = 0x80;
/// Register A after reset: 32.768 kHz time base, 1024 Hz rate.
pub const A_DEFAULT: u8 = 0x26;
/// Register B: SET, updates stopped so the guest can write the time.
pub const B_SET: u8 = 0x80;
/// Register B: data mode binary (else BCD).
pub const B_BINARY: u8 = 0x04;
/// Register B: 24-hour mode (else 12-hour).
pub const B_24H: u8 = 0x02;
/// Register B after reset: BCD, 24-hour.
pub const B_DEFAULT: u8 = B_24H;
/// Register D: valid RAM and time.
pub const D_VRT: u8 = 0x80;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Where the wall clock comes from.
pub type WallClock = Box<dyn Fn() -> SystemTime + Send>;

/// Guest-visible state, for snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmosState {
    /// The 128 bytes; the clock bytes (0x00-0x09, 0x32) are computed on read, not stored here.
    pub ram: [u8; 128],
    /// The selected byte.
    pub index: u8,
    /// NMIs masked by index bit 7.
    pub nmi_masked: bool,
    /// Guest time minus host time, in seconds.
    pub offset_secs: i64,
    /// While register B's SET bit is on: the guest time being edited, field by field (so an
    /// intermediate impossible date such as 1999-02-29 is kept as written until SET clears).
    pub frozen: Option<RtcTime>,
}

/// The RTC and CMOS RAM.
pub struct Cmos {
    state: CmosState,
    clock: WallClock,
}

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcTime {
    /// Full year, e.g. 2024.
    pub year: i64,
    /// Month, 1-12.
    pub month: i64,
    /// Day of month, 1-31.
    pub day: i64,
    /// Hour, 0-23.
    pub hour: i64,
    /// Minute.
    pub min: i64,
    /// Second.
    pub sec: i64,
}

type Tm = RtcTime;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

impl Tm {
    fn from_unix(t: i64) -> Self {
        let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: secs / 3600,
            min: secs / 60 % 60,
            sec: secs % 60,
        }
    }

    fn to_unix(self) -> i64 {
        days_from_civil(self.year, self.month.clamp(1, 12), self.day) * 86_400
            + self.hour * 3600
            + self.min * 60
            + self.sec
    }

    /// Day of week, 0 = Sunday (1970-01-01 was a Thursday).
    fn weekday(self) -> i64 {
        (days_from_civil(self.year, self.month, self.day) + 4).rem_euclid(7)
    }
}

fn host_now() -> SystemTime {
    SystemTime::now()
}

impl Cmos {
    /// A CMOS holding QEMU `pc`'s memory-size bytes for `ram_size_below_4g` bytes of RAM below
    /// 4 GiB and `ram_size_above_4g` above, and `cpus` CPUs; the clock is the host's.
    ///
    /// - 0x15/0x16: base memory, min(RAM below 4 GiB, 640 KiB) in KiB;
    /// - 0x17/0x18 and 0x30/0x31: KiB above 1 MiB (below 4 GiB), at most 65535;
    /// - 0x34/0x35: 64 KiB units between 16 MiB and 4 GiB, at most 65535;
    /// - 0x5b..0x5d: 64 KiB units above 4 GiB;
    /// - 0x5f: CPUs - 1.
    pub fn new(ram_size_below_4g: u64, ram_size_above_4g: u64, cpus: usize) -> Self {
        let mut ram = [0u8; 128];
        ram[usize::from(REG_A)] = A_DEFAULT;
        ram[usize::from(REG_B)] = B_DEFAULT;
        ram[usize::from(REG_D)] = D_VRT;
        let mut put16 = |at: u8, v: u64| {
            let v = v.min(0xffff) as u16;
            ram[usize::from(at)..usize::from(at) + 2].copy_from_slice(&v.to_le_bytes());
        };
        put16(REG_BASE_MEM, (ram_size_below_4g / KIB).min(640));
        let ext = ram_size_below_4g.saturating_sub(MIB) / KIB;
        put16(REG_EXT_MEM, ext);
        put16(REG_EXT_MEM2, ext);
        put16(
            REG_MEM_ABOVE_16M,
            ram_size_below_4g.saturating_sub(16 * MIB) / (64 * KIB),
        );
        let high = (ram_size_above_4g / (64 * KIB)).min(0xff_ffff) as u32;
        let at = usize::from(REG_MEM_ABOVE_4G);
        ram[at..at + 3].copy_from_slice(&high.to_le_bytes()[..3]);
        ram[usize::from(REG_CPUS)] = cpus.saturating_sub(1).min(255) as u8;
        let state = CmosState {
            ram,
            index: 0,
            nmi_masked: false,
            offset_secs: 0,
            frozen: None,
        };
        Self::from_state(state)
    }

    /// A CMOS resumed from `state`, on the host clock.
    pub fn from_state(state: CmosState) -> Self {
        Self {
            state,
            clock: Box::new(host_now),
        }
    }

    /// The same device reading its wall clock from `clock` (tests, deterministic runs).
    pub fn with_clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// Machine reset: the RAM and the clock are battery-backed and keep their contents; the
    /// index and the NMI mask go back to 0.
    pub fn reset(&mut self) {
        self.state.index = 0;
        self.state.nmi_masked = false;
    }

    /// A copy of the state.
    pub fn state(&self) -> CmosState {
        self.state.clone()
    }

    /// Whether the guest has masked NMIs through index bit 7.
    pub fn nmi_masked(&self) -> bool {
        self.state.nmi_masked
    }

    fn host_secs(&self) -> i64 {
        match (self.clock)().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }

    fn guest_time(&self) -> Tm {
        self.state.frozen.unwrap_or_else(|| {
            Tm::from_unix(self.host_secs().saturating_add(self.state.offset_secs))
        })
    }

    fn reg_b(&self) -> u8 {
        self.state.ram[usize::from(REG_B)]
    }

    fn encode(&self, v: i64) -> u8 {
        let v = v.rem_euclid(100) as u8;
        if self.reg_b() & B_BINARY != 0 {
            v
        } else {
            (v / 10) << 4 | (v % 10)
        }
    }

    fn decode(&self, v: u8) -> i64 {
        if self.reg_b() & B_BINARY != 0 {
            i64::from(v)
        } else {
            i64::from((v >> 4) * 10 + (v & 0x0f))
        }
    }

    fn clock_byte(&self, index: u8) -> Option<u8> {
        let tm = self.guest_time();
        Some(match index {
            REG_SECONDS => self.encode(tm.sec),
            REG_MINUTES => self.encode(tm.min),
            REG_HOURS if self.reg_b() & B_24H != 0 => self.encode(tm.hour),
            REG_HOURS => {
                let h12 = if tm.hour % 12 == 0 { 12 } else { tm.hour % 12 };
                self.encode(h12) | if tm.hour >= 12 { 0x80 } else { 0 }
            }
            REG_WEEKDAY => self.encode(tm.weekday() + 1),
            REG_DAY => self.encode(tm.day),
            REG_MONTH => self.encode(tm.month),
            REG_YEAR => self.encode(tm.year),
            REG_CENTURY => self.encode(tm.year.div_euclid(100)),
            _ => return None,
        })
    }

    /// The guest writes a clock byte: change that field of the guest time.
    fn set_clock_byte(&mut self, index: u8, v: u8) -> bool {
        let mut tm = self.guest_time();
        match index {
            REG_SECONDS => tm.sec = self.decode(v),
            REG_MINUTES => tm.min = self.decode(v),
            REG_HOURS if self.reg_b() & B_24H != 0 => tm.hour = self.decode(v),
            REG_HOURS => {
                let h = self.decode(v & 0x7f) % 12;
                tm.hour = if v & 0x80 != 0 { h + 12 } else { h };
            }
            // Derived from the date.
            REG_WEEKDAY => {}
            REG_DAY => tm.day = self.decode(v),
            REG_MONTH => tm.month = self.decode(v),
            REG_YEAR => tm.year = tm.year.div_euclid(100) * 100 + self.decode(v),
            REG_CENTURY => tm.year = self.decode(v) * 100 + tm.year.rem_euclid(100),
            _ => return false,
        }
        match self.state.frozen {
            Some(_) => self.state.frozen = Some(tm),
            None => self.state.offset_secs = tm.to_unix().saturating_sub(self.host_secs()),
        }
        true
    }

    fn read_data(&mut self) -> u8 {
        let index = self.state.index;
        if let Some(b) = self.clock_byte(index) {
            return b;
        }
        match index {
            REG_A => self.state.ram[usize::from(REG_A)] & !A_UIP,
            // No interrupt source is modelled, so no flag is ever set.
            REG_C => 0,
            REG_D => D_VRT,
            _ => self.state.ram[usize::from(index & 0x7f)],
        }
    }

    fn write_data(&mut self, v: u8) {
        let index = self.state.index;
        if self.set_clock_byte(index, v) {
            return;
        }
        match index {
            REG_A => self.state.ram[usize::from(REG_A)] = v & !A_UIP,
            REG_B => {
                let now = self.guest_time();
                match (self.state.frozen, v & B_SET != 0) {
                    (None, true) => self.state.frozen = Some(now),
                    (Some(t), false) => {
                        self.state.offset_secs = t.to_unix().saturating_sub(self.host_secs());
                        self.state.frozen = None;
                    }
                    _ => {}
                }
                self.state.ram[usize::from(REG_B)] = v;
            }
            REG_C | REG_D => {}
            _ => self.state.ram[usize::from(index & 0x7f)] = v,
        }
    }
}

impl Cmos {
    fn read_port(&mut self, offset: u64) -> u8 {
        match offset {
            DATA => self.read_data(),
            // The index port is write-only on a PC; it reads as an undriven bus.
            _ => 0xff,
        }
    }

    fn write_port(&mut self, offset: u64, v: u8) {
        match offset {
            INDEX => {
                self.state.index = v & 0x7f;
                self.state.nmi_masked = v & INDEX_NMI_MASK != 0;
            }
            DATA => self.write_data(v),
            _ => {}
        }
    }
}

impl BusDevice for Cmos {
    // Byte ports: a 16-bit access at 0x70 touches the index, then the data port, as on ISA.
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = self.read_port(offset + i as u64);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            self.write_port(offset + i as u64, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 2024-02-29 13:05:09 UTC, a Thursday.
    const T: u64 = 1_709_211_909;

    fn cmos_at(t: u64) -> Cmos {
        Cmos::new(0, 0, 1).with_clock(Box::new(move || UNIX_EPOCH + Duration::from_secs(t)))
    }

    fn get(c: &mut Cmos, i: u8) -> u8 {
        c.write(INDEX, &[i]);
        let mut b = [0];
        c.read(DATA, &mut b);
        b[0]
    }

    fn set(c: &mut Cmos, i: u8, v: u8) {
        c.write(INDEX, &[i]);
        c.write(DATA, &[v]);
    }

    #[test]
    fn civil_round_trips() {
        for t in [0i64, 951_782_400, T as i64, 4_102_444_800, -86_400] {
            assert_eq!(Tm::from_unix(t).to_unix(), t);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(Tm::from_unix(T as i64).weekday(), 4);
    }

    #[test]
    fn bcd_24h_by_default() {
        let mut c = cmos_at(T);
        let got: Vec<u8> = [0, 2, 4, 6, 7, 8, 9, 0x32]
            .iter()
            .map(|&i| get(&mut c, i))
            .collect();
        assert_eq!(got, [0x09, 0x05, 0x13, 0x05, 0x29, 0x02, 0x24, 0x20]);
        assert_eq!(get(&mut c, REG_A) & A_UIP, 0);
        assert_eq!(get(&mut c, REG_D), D_VRT);
        assert_eq!(get(&mut c, REG_C), 0);
    }

    #[test]
    fn binary_and_12h_modes() {
        let mut c = cmos_at(T);
        set(&mut c, REG_B, B_BINARY);
        assert_eq!(get(&mut c, REG_HOURS), 0x80 | 1);
        assert_eq!(get(&mut c, REG_DAY), 29);
        assert_eq!(get(&mut c, REG_CENTURY), 20);
        set(&mut c, REG_B, 0);
        assert_eq!(get(&mut c, REG_HOURS), 0x81);
        let mut m = cmos_at(T - 13 * 3600); // midnight hour
        set(&mut m, REG_B, 0);
        assert_eq!(get(&mut m, REG_HOURS), 0x12);
    }

    #[test]
    fn guest_sets_the_time() {
        let mut c = cmos_at(T);
        set(&mut c, REG_B, B_SET | B_24H);
        set(&mut c, REG_YEAR, 0x99);
        set(&mut c, REG_CENTURY, 0x19);
        set(&mut c, REG_HOURS, 0x23);
        // Impossible while half-written: kept as written.
        assert_eq!(get(&mut c, REG_DAY), 0x29);
        set(&mut c, REG_DAY, 0x28);
        set(&mut c, REG_B, B_24H);
        assert_eq!(get(&mut c, REG_DAY), 0x28);
        assert_eq!(get(&mut c, REG_YEAR), 0x99);
        assert_eq!(get(&mut c, REG_CENTURY), 0x19);
        assert_eq!(get(&mut c, REG_HOURS), 0x23);
        assert_eq!(get(&mut c, REG_MONTH), 0x02);
        assert!(c.state().offset_secs < 0);
    }

    #[test]
    fn memory_bytes_as_qemu_writes_them() {
        let gib = 1024 * MIB;
        let mut c = Cmos::new(3 * gib, 2 * gib, 4);
        let w = |c: &mut Cmos, i: u8| u16::from_le_bytes([get(c, i), get(c, i + 1)]);
        assert_eq!(w(&mut c, REG_BASE_MEM), 640);
        assert_eq!(w(&mut c, REG_EXT_MEM), 0xffff);
        assert_eq!(w(&mut c, REG_EXT_MEM2), 0xffff);
        assert_eq!(
            w(&mut c, REG_MEM_ABOVE_16M),
            ((3 * gib - 16 * MIB) / 65536) as u16
        );
        let hi = u32::from_le_bytes([get(&mut c, 0x5b), get(&mut c, 0x5c), get(&mut c, 0x5d), 0]);
        assert_eq!(u64::from(hi), 2 * gib / 65536);
        assert_eq!(get(&mut c, REG_CPUS), 3);
        let mut small = Cmos::new(32 * MIB, 0, 1);
        assert_eq!(w(&mut small, REG_EXT_MEM), 31 * 1024);
        assert_eq!(get(&mut small, REG_CPUS), 0);
    }

    #[test]
    fn index_masks_nmi_and_ram_persists() {
        let mut c = cmos_at(T);
        c.write(INDEX, &[0x80 | 0x40]);
        assert!(c.nmi_masked());
        c.write(DATA, &[0x77]);
        let mut b = [0];
        c.read(INDEX, &mut b);
        assert_eq!(b[0], 0xff);
        assert_eq!(get(&mut c, 0x40), 0x77);
        // A word write selects and writes in one go.
        c.write(INDEX, &[0x41, 0x66]);
        assert_eq!(get(&mut c, 0x41), 0x66);
        assert!(!c.nmi_masked());
        let st = c.state();
        assert_eq!(Cmos::from_state(st.clone()).state(), st);
    }
}
