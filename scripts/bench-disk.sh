#!/usr/bin/env bash
# bench-disk.sh [RUNS]: sequential virtio-blk throughput inside Debian's kernel, kemu vs QEMU,
# both with the software CPU (-accel tcg), same kernel, initramfs, memory and images.
#
# Each boot gets two fresh drives, vda = raw (sparse file) and vdb = qcow2 (`qemu-img create`,
# 64 KiB clusters), and the initramfs's `kemu.diskbench` (scripts/make-linux-guest.sh) runs, on
# each disk from its start, O_DIRECT `dd` passes: 1 MiB writes (from /dev/zero, so qcow2
# clusters get allocated here) and 1 MiB reads of BIG_MIB MiB, then 4 KiB writes (over
# allocated clusters) and 4 KiB reads of MIB MiB. The guest times each pass with /proc/uptime (10 ms steps) and prints
# `KEMU-BENCH DISK write|read BLOCK TOTAL_BYTES CENTISECONDS` through the kernel log; this
# script parses those lines. Alternates kemu and QEMU, RUNS boots each (default 1), and prints
# the median MB/s (10^6 bytes/s) per pass and the ratio kemu/QEMU (above 1: kemu is faster).
# Both use their default cache mode (kemu: writeback; QEMU: writeback).
#
# Environment: KEMU (default target/release/kemu, built with `cargo build --release` if
# missing), QEMU (default qemu-system-x86_64, installed from Debian's qemu-system-x86 when
# absent), GUEST (default build/linux-guest), KERNEL (default bzImage), MEM (default 512),
# MIB (default 16), BIG_MIB (default 64, also the disks' size), WORKDIR for the images (default target/bench-disk: a real disk, not tmpfs),
# TIMEOUT per boot in seconds (default 900).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUNS=${1:-1}
KEMU=${KEMU:-target/release/kemu}
QEMU=${QEMU:-qemu-system-x86_64}
GUEST=${GUEST:-build/linux-guest}
KERNEL=${KERNEL:-bzImage}
MEM=${MEM:-512}
MIB=${MIB:-16}
BIG_MIB=${BIG_MIB:-64}
WORKDIR=${WORKDIR:-target/bench-disk}
TIMEOUT=${TIMEOUT:-900}
export DEBIAN_FRONTEND=noninteractive

log() { echo "bench-disk: $*" >&2; }
die() { log "error: $*"; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

case "$RUNS" in '' | *[!0-9]* | 0) die "RUNS must be a positive number, not '$RUNS'" ;; esac
for n in "$MIB" "$BIG_MIB"; do
    case "$n" in '' | *[!0-9]* | 0) die "MIB and BIG_MIB must be positive numbers, not '$n'" ;; esac
done
[ "$MIB" -le "$BIG_MIB" ] || die "MIB ($MIB) must not exceed BIG_MIB ($BIG_MIB)"
need=()
command -v "$QEMU" >/dev/null || need+=(qemu-system-x86)
command -v qemu-img >/dev/null || need+=(qemu-utils)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    as_root apt-get update -q >/dev/null
    as_root apt-get install -y -q "${need[@]}" >/dev/null
fi
[ -x "$KEMU" ] || { log "building $KEMU"; cargo build --release --bin kemu >&2; }
# The default guest is (re)made as needed: an initramfs older than the disk benchmark is rebuilt.
if [ "$GUEST" = build/linux-guest ]; then scripts/make-linux-guest.sh "$GUEST" >/dev/null; fi
if [ ! -s "$GUEST/$KERNEL" ] || [ ! -s "$GUEST/initramfs.cpio.gz" ]; then die "no guest in $GUEST"; fi

mkdir -p "$WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)
RESULTS="$WORKDIR/results"
: >"$RESULTS"

# bench NAME RUN: one boot under NAME (kemu or qemu) on fresh images; appends
# "NAME DISK OP BLOCK MB/s" lines to $RESULTS.
bench() {
    local name=$1 run=$2 out status=0 emu
    local raw="$WORKDIR/disk.raw" qcow2="$WORKDIR/disk.qcow2"
    rm -f "$raw" "$qcow2"
    truncate -s "${BIG_MIB}M" "$raw"
    qemu-img create -q -f qcow2 "$qcow2" "${BIG_MIB}M"
    out="$WORKDIR/$name-$run.log"
    emu=$KEMU
    [ "$name" = qemu ] && emu=$QEMU
    timeout "$TIMEOUT" "$emu" -accel tcg -m "$MEM" -kernel "$GUEST/$KERNEL" \
        -initrd "$GUEST/initramfs.cpio.gz" -nographic -no-reboot \
        -append "console=ttyS0 panic=-1 kemu.diskbench kemu.disks=vda,vdb kemu.bench_mib=$MIB kemu.bench_big_mib=$BIG_MIB" \
        -drive "file=$raw,format=raw,if=virtio" -drive "file=$qcow2,format=qcow2,if=virtio" \
        </dev/null >"$out" 2>&1 || status=$?
    if [ "$status" != 0 ] || ! grep -q 'KEMU-BENCH-DONE' "$out" || grep -q 'KEMU-BENCH .* error' "$out"; then
        tail -n 20 "$out" >&2
        die "$name run $run: status $status, the benchmark did not finish cleanly (log: $out)"
    fi
    # A pass shorter than the clock's 10 ms step counts as 1 step (a lower bound on MB/s).
    grep -o 'KEMU-BENCH [a-z0-9]* [a-z]* [0-9]* [0-9]* [0-9]*' "$out" |
        awk -v name="$name" '{ cs = $6 < 1 ? 1 : $6
            printf "%s %s %s %s %.1f\n", name, $2, $3, $4, $5 / 1e6 / (cs / 100) }' >>"$RESULTS"
    log "$name run $run: done ($(grep -c "^$name " "$RESULTS") passes so far)"
}

log "$RUNS boot(s) each: $KEMU vs $QEMU, -accel tcg, 1 MiB passes of $BIG_MIB MiB, 4 KiB passes of $MIB MiB"
for run in $(seq 1 "$RUNS"); do
    bench kemu "$run"
    bench qemu "$run"
done

echo
printf '%-6s %-6s %-6s %12s %12s %10s\n' disk op block "kemu MB/s" "QEMU MB/s" kemu/QEMU
for disk in vda vdb; do
    fmt=raw
    [ "$disk" = vdb ] && fmt=qcow2
    for bs in 1048576 4096; do
        for op in write read; do
            med() { awk -v n="$1" -v d="$disk" -v o="$op" -v b="$bs" \
                '$1 == n && $2 == d && $3 == o && $4 == b { print $5 }' "$RESULTS" | sort -n |
                awk '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit }
                    m = int((NR + 1) / 2); if (NR % 2) print v[m]; else print (v[m] + v[m + 1]) / 2 }'; }
            k=$(med kemu)
            q=$(med qemu)
            label=4K
            [ "$bs" = 1048576 ] && label=1M
            printf '%-6s %-6s %-6s %12s %12s %10s\n' "$fmt" "$op" "$label" "$k" "$q" \
                "$(awk -v a="$k" -v b="$q" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
        done
    done
done
