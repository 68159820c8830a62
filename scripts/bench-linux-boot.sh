#!/usr/bin/env bash
# bench-linux-boot.sh [RUNS]: boot time of Debian's kernel + the busybox initramfs to power-off,
# kemu vs QEMU, both with the software CPU (-accel tcg), alternating kemu and QEMU, RUNS runs
# each (default 5). Prints every run's wall time, each side's median and the ratio kemu/QEMU.
#
# The guest is scripts/make-linux-guest.sh's (made if missing): its default /init prints a
# marker, a few commands' output and runs `poweroff -f`, which ends both emulators. A run counts
# only if the guest's power-off message came out (else the script stops with the log's tail).
#
# Environment: KEMU (default target/release/kemu, built with `cargo build --release` if
# missing), QEMU (default qemu-system-x86_64, installed from Debian's qemu-system-x86 when
# absent), GUEST (default build/linux-guest), KERNEL (default bzImage), MEM (default 512),
# APPEND (default "console=ttyS0 panic=-1"), TIMEOUT per boot in seconds (default 600).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUNS=${1:-5}
KEMU=${KEMU:-target/release/kemu}
QEMU=${QEMU:-qemu-system-x86_64}
GUEST=${GUEST:-build/linux-guest}
KERNEL=${KERNEL:-bzImage}
MEM=${MEM:-512}
APPEND=${APPEND:-console=ttyS0 panic=-1}
TIMEOUT=${TIMEOUT:-600}
export DEBIAN_FRONTEND=noninteractive

log() { echo "bench-linux-boot: $*" >&2; }
die() { log "error: $*"; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

case "$RUNS" in '' | *[!0-9]* | 0) die "RUNS must be a positive number, not '$RUNS'" ;; esac
if ! command -v "$QEMU" >/dev/null; then
    log "installing qemu-system-x86 for $QEMU"
    as_root apt-get update -q >/dev/null
    as_root apt-get install -y -q qemu-system-x86 >/dev/null
fi
[ -x "$KEMU" ] || { log "building $KEMU"; cargo build --release --bin kemu >&2; }
if [ ! -s "$GUEST/$KERNEL" ] || [ ! -s "$GUEST/initramfs.cpio.gz" ]; then
    scripts/make-linux-guest.sh "$GUEST" >/dev/null
fi

LOGDIR=$(mktemp -d)
trap 'rm -rf "$LOGDIR"' EXIT

# boot NAME RUN: one boot under NAME (kemu or qemu); prints the wall time in seconds.
boot() {
    local name=$1 run=$2 out t0 t1 status=0
    local args=(-accel tcg -m "$MEM" -kernel "$GUEST/$KERNEL" -initrd "$GUEST/initramfs.cpio.gz"
        -append "$APPEND" -nographic -no-reboot)
    out="$LOGDIR/$name-$run.log"
    t0=$(date +%s%N)
    if [ "$name" = kemu ]; then
        timeout "$TIMEOUT" "$KEMU" "${args[@]}" </dev/null >"$out" 2>&1 || status=$?
    else
        timeout "$TIMEOUT" "$QEMU" "${args[@]}" </dev/null >"$out" 2>&1 || status=$?
    fi
    t1=$(date +%s%N)
    if [ "$status" != 0 ] || ! grep -q 'reboot: Power down' "$out"; then
        tail -n 20 "$out" >&2
        die "$name run $run: status $status, no clean power-off (log above)"
    fi
    awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.2f\n", ns / 1e9 }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { m = int((NR + 1) / 2);
    if (NR % 2) printf "%.2f\n", v[m]; else printf "%.2f\n", (v[m] + v[m + 1]) / 2 }'; }

log "$RUNS runs each: $KEMU vs $QEMU, -accel tcg -m $MEM, $GUEST/$KERNEL"
: >"$LOGDIR/kemu.times"
: >"$LOGDIR/qemu.times"
for run in $(seq 1 "$RUNS"); do
    for name in kemu qemu; do
        t=$(boot "$name" "$run")
        echo "$t" >>"$LOGDIR/$name.times"
        printf 'run %d  %-5s %8s s\n' "$run" "$name" "$t"
    done
done
KEMU_MED=$(median <"$LOGDIR/kemu.times")
QEMU_MED=$(median <"$LOGDIR/qemu.times")
echo
printf '%-24s %10s %10s %10s\n' "boot to power-off" "kemu (s)" "QEMU (s)" "kemu/QEMU"
printf '%-24s %10s %10s %10s\n' "median of $RUNS" "$KEMU_MED" "$QEMU_MED" \
    "$(awk -v a="$KEMU_MED" -v b="$QEMU_MED" 'BEGIN { printf "%.2fx", a / b }')"
