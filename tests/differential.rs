//! Differential test: the software CPU (tcg) against the host CPU (KVM) on random blocks of
//! integer instructions run at CPL 3. Seed from `KEMU_DIFF_SEED` (decimal or 0x-hex), block
//! count from `KEMU_DIFF_BLOCKS`; a failure prints the seed, block and disassembly.

use kemu::difftest::gen::{Generator, Rng};
use kemu::difftest::harness::{Harness, Start, CODE};
use kemu::difftest::{run_campaign, DiffError};

const DEFAULT_SEED: u64 = 0x6b65_6d75;
const BLOCKS: usize = 2000;
const LEN: usize = 50;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

fn kvm_present() -> bool {
    std::path::Path::new("/dev/kvm").exists()
}

#[test]
fn one_instruction_block_ends_in_shutdown_on_both() {
    if !kvm_present() {
        println!("SKIPPED (no /dev/kvm)");
        return;
    }
    let mut h = Harness::new().unwrap();
    let g = Generator::new();
    let mut rng = Rng::new(1);
    let block = g.block(&mut rng, 1, CODE).unwrap();
    let start = Start::random(&mut rng);
    let (diffs, k, t) = h.run(&block, &start).unwrap();
    println!("{}", block.disassembly());
    println!("kvm {k:x?}\ntcg {t:x?}", k = (k.rip, k.rflags, k.gpr), t = (t.rip, t.rflags, t.gpr));
    assert!(diffs.is_empty(), "{diffs:?}");
}

#[test]
fn tcg_matches_kvm_on_random_blocks() {
    if !kvm_present() {
        println!("SKIPPED (no /dev/kvm)");
        return;
    }
    let seed = env_u64("KEMU_DIFF_SEED").unwrap_or(DEFAULT_SEED);
    let blocks = env_u64("KEMU_DIFF_BLOCKS").map_or(BLOCKS, |b| b as usize);
    println!("differential: seed {seed:#x} (set KEMU_DIFF_SEED to replay), {blocks} blocks x {LEN}");
    let mut h = Harness::new().unwrap();
    let t0 = std::time::Instant::now();
    match run_campaign(&mut h, seed, blocks, LEN) {
        Ok(n) => println!("{n} instructions compared in {:?}", t0.elapsed()),
        Err(DiffError::Mismatch(m)) => panic!("{m}"),
        Err(e) => panic!("{e}"),
    }
}
