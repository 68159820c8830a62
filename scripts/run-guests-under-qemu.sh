#!/usr/bin/env bash
# run-guests-under-qemu.sh [GUEST...]: run the test guests under QEMU (TCG) as a peer oracle and
# compare each one's serial output with tests/guest-images/NAME.expected and its exit status
# with the one in the table below. Builds the guests first (cargo build). Needs
# qemu-system-x86_64 (Debian: qemu-system-x86). Not run by CI.
#   SMP=2 (default; the .expected files assume 2 CPUs)   ACCEL=tcg   QEMU=qemu-system-x86_64
# Exit status: 0 when every guest matched, 1 otherwise.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
QEMU=${QEMU:-qemu-system-x86_64}
ACCEL=${ACCEL:-tcg}
SMP=${SMP:-2}
command -v "$QEMU" >/dev/null || { echo "no $QEMU: apt-get install qemu-system-x86" >&2; exit 1; }

# name -> the exit status QEMU must end with: debug-exit value v gives (v << 1) | 1; the demo
# powers off through ACPI (status 0).
declare -A STATUS=([hello]=1 [hello.elf]=1 [exit_code]=85 [pio_bench]=1 [cpl3]=1 [x87]=1 [smp]=1 [syscall]=1 [demo]=0 [virtio_blk]=1 [modes]=1 [modes_tcg]=1 [paging]=1 [exceptions]=1 [exceptions_tcg]=1 [gates]=1 [gates_tcg]=1 [strings]=1 [smc]=1)

(cd "$ROOT" && cargo build -q) || exit 1
# The most recently written OUT_DIR is the one `cargo build` just used.
# shellcheck disable=SC2012
DIR=$(ls -td "$ROOT"/target/debug/build/kemu-*/out/guests 2>/dev/null | head -n 1)
[ -n "$DIR" ] || { echo "no built guests under target/debug/build" >&2; exit 1; }

GUESTS=("$@")
[ ${#GUESTS[@]} -gt 0 ] || GUESTS=(hello hello.elf exit_code pio_bench cpl3 x87 smp syscall demo gdb_target lapic_timer ioapic ipi hlt_wake virtio_blk modes modes_tcg paging exceptions exceptions_tcg gates gates_tcg strings smc)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
pass=0 fail=0
for g in "${GUESTS[@]}"; do
    file="$DIR/$g"
    [[ $g == *.elf ]] || file="$file.bin"
    expected="$ROOT/tests/guest-images/${g%.elf}.expected"
    start=$(date +%s.%N)
    timeout 60 "$QEMU" -accel "$ACCEL" -M pc -m 128 -smp "$SMP" -display none -vga none \
        -serial stdio -no-reboot -kernel "$file" \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04 >"$OUT/$g.out" 2>"$OUT/$g.err" </dev/null
    status=$?
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    want=${STATUS[$g]:-1}
    if [ "$status" = "$want" ] && cmp -s "$OUT/$g.out" "$expected"; then
        printf 'PASS %-10s status %-3s %ss\n' "$g" "$status" "$secs"
        pass=$((pass + 1))
    else
        printf 'FAIL %-10s status %s (want %s)\n' "$g" "$status" "$want"
        diff -u "$expected" "$OUT/$g.out" | sed 's/^/    /'
        sed 's/^/    qemu: /' "$OUT/$g.err"
        fail=$((fail + 1))
    fi
done
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
