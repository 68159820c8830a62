#!/usr/bin/env bash
# scripts/test.sh: kemu's whole test suite, as CI runs it (.ci/run) on a fresh machine.
#   1. installs what the tests need from Debian after an apt-get update: binutils for the test
#      guests, qemu-utils as the disk-image peer, gdb for the gdbstub tests, memtest86+
#      (/boot/memtest86+x64.bin, booted by tests/memtest.rs), libxml2-utils (xmllint) for kemu
#      bench's SVG (the Linux guest script installs cpio/xz); and qemu.qmp from PyPI (pip) for
#      tests/qmp.rs;
#   2. assembles the real Linux test guests from Debian's packages (cloud and generic kernels,
#      cached in build/linux-guest and build/linux-guest-generic);
#   3. checks formatting and lints, then runs every unit and integration test.
# KVM tests run when /dev/kvm exists and print "SKIPPED (no /dev/kvm)" otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need=()
command -v as >/dev/null && command -v ld >/dev/null && command -v objcopy >/dev/null || need+=(binutils)
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null || need+=(qemu-utils)
command -v gdb >/dev/null || need+=(gdb)
[ -s /boot/memtest86+x64.bin ] || need+=(memtest86+)
command -v xmllint >/dev/null || need+=(libxml2-utils)  # checks kemu bench's SVG
if [ ! -s build/linux-guest/vmlinux ] || [ ! -s build/linux-guest-generic/bzImage ] ||
    [ ${#need[@]} -gt 0 ]; then
    echo "test.sh: apt-get update" >&2
    as_root apt-get update -q >/dev/null
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "test.sh: installing ${need[*]}" >&2
    as_root apt-get install -y -q "${need[@]}" >/dev/null
fi

# tests/qmp.rs drives kemu with the real QMP client library from PyPI.
python3 -c "import qemu.qmp" 2>/dev/null || python3 -m pip install -q qemu.qmp || {
    echo "test.sh: pip install qemu.qmp failed (tests/qmp.rs needs it)" >&2
    exit 1
}
export KEMU_REQUIRE_QMP=1

scripts/make-linux-guest.sh build/linux-guest
scripts/make-linux-guest.sh build/linux-guest-generic generic
export KEMU_REQUIRE_LINUX_GUEST=1

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test
