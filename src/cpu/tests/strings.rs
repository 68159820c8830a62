//! REP MOVS/STOS through the bulk path checked against a byte-by-byte model of the element
//! semantics: page crossings, overlapping copies (forward replication), every element size.

use iced_x86::code_asm::*;

use super::*;

const BUF: u64 = 0x30_0000;
const LEN: usize = 0x3000;

/// Run `rep movs`/`rep stos` of element size `es` with the given registers; return the buffer
/// and the final RSI, RDI, RCX.
fn run_rep(movs: bool, elem: usize, src: u64, dst: u64, count: u64) -> (Vec<u8>, [u64; 3]) {
    let mut g = Guest::new();
    let init: Vec<u8> = (0..LEN).map(|k| (k * 7 + 3) as u8).collect();
    g.ram.write_slice(&init, GuestAddress(BUF)).unwrap();
    let code = asm(64, |a| {
        a.mov(rsi, src)?;
        a.mov(rdi, dst)?;
        a.mov(rcx, count)?;
        a.mov(rax, 0x8877_6655_4433_2211u64)?;
        a.cld()?;
        match (movs, elem) {
            (true, 1) => a.rep().movsb()?,
            (true, 2) => a.rep().movsw()?,
            (true, 4) => a.rep().movsd()?,
            (true, _) => a.rep().movsq()?,
            (false, 1) => a.rep().stosb()?,
            (false, 2) => a.rep().stosw()?,
            (false, 4) => a.rep().stosd()?,
            (false, _) => a.rep().stosq()?,
        }
        a.hlt()
    });
    g.set_long(&code);
    assert_eq!(g.run(), CpuExit::Halt);
    let mut out = vec![0u8; LEN];
    g.ram.read_slice(&mut out, GuestAddress(BUF)).unwrap();
    (out, [g.gpr(6), g.gpr(7), g.gpr(1)])
}

fn model(movs: bool, elem: usize, src: u64, dst: u64, count: u64) -> (Vec<u8>, [u64; 3]) {
    let mut m: Vec<u8> = (0..LEN).map(|k| (k * 7 + 3) as u8).collect();
    let pattern = 0x8877_6655_4433_2211u64.to_le_bytes();
    for e in 0..count as usize {
        // A whole element is read before it is written.
        let s = (src - BUF) as usize + e * elem;
        let v: Vec<u8> = if movs {
            m[s..s + elem].to_vec()
        } else {
            pattern[..elem].to_vec()
        };
        let d = (dst - BUF) as usize + e * elem;
        m[d..d + elem].copy_from_slice(&v);
    }
    let span = count * elem as u64;
    let src_end = if movs { src + span } else { src };
    (m, [src_end, dst + span, 0])
}

#[test]
fn rep_movs_and_stos_match_the_element_model() {
    let cases: &[(u64, u64, u64)] = &[
        (0x10, 0x1000 - 5, 700), // destination crosses a page
        (0xff8, 0x1800, 600),    // source crosses a page
        (0x100, 0x104, 300),     // overlapping forward copy: replicates
        (0x200, 0x100, 400),     // overlapping, destination below: memmove-like
        (0x0, 0x1000, 0),        // nothing to do
        (0x123, 0x1ffd, 1),      // one element across a page end
    ];
    for &movs in &[true, false] {
        for &elem in &[1usize, 2, 4, 8] {
            for &(s, d, n) in cases {
                let n = n.min(((LEN as u64 - s.max(d)) / elem as u64).saturating_sub(1));
                let got = run_rep(movs, elem, BUF + s, BUF + d, n);
                let want = model(movs, elem, BUF + s, BUF + d, n);
                assert!(
                    got == want,
                    "movs={movs} elem={elem} src={s:#x} dst={d:#x} n={n}: registers {:x?} vs {:x?}",
                    got.1,
                    want.1
                );
            }
        }
    }
}
