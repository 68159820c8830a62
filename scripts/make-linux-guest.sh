#!/usr/bin/env bash
# make-linux-guest.sh [OUT_DIR [FLAVOUR]]: assemble kemu's real-Linux test guest from Debian's
# packages. FLAVOUR is `cloud` (default: linux-image-*-cloud-amd64) or `generic`
# (linux-image-*-amd64, the kernel Debian installs on PCs).
#
# Outputs in OUT_DIR (default build/linux-guest, or build/linux-guest-generic, which git ignores):
#   bzImage             Debian's kernel of that flavour (newest 6.1), as shipped
#   vmlinux             the ELF kernel unpacked from bzImage's compressed payload
#   initramfs.cpio.gz   busybox-static and an /init that prints KEMU-LINUX-GUEST-OK, runs a few
#                       commands (uname, /proc/cpuinfo, date, a pipeline) and powers off; with
#                       `kemu.shell` on the kernel command line it starts a shell instead
#   info.txt            the package versions and whether vmlinux has a PVH entry note
# Cached: an output that exists is not made again (delete it to rebuild). Non-interactive;
# needs root for apt-get (it installs what is missing: cpio, xz-utils/zstd/gzip).
# Try it:
#   qemu-system-x86_64 -accel tcg -m 512 -kernel OUT/bzImage -initrd OUT/initramfs.cpio.gz \
#       -append console=ttyS0 -nographic -no-reboot
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FLAVOUR=${2:-cloud}
case "$FLAVOUR" in
cloud) META=linux-image-cloud-amd64; KREGEX='^linux-image-6\.1\.[0-9.]+-[0-9]+-cloud-amd64$'
    DEFAULT_OUT=$ROOT/build/linux-guest ;;
generic) META=linux-image-amd64; KREGEX='^linux-image-6\.1\.[0-9.]+-[0-9]+-amd64$'
    DEFAULT_OUT=$ROOT/build/linux-guest-generic ;;
*) echo "make-linux-guest: unknown flavour '$FLAVOUR' (cloud or generic)" >&2; exit 2 ;;
esac
OUT=${1:-$DEFAULT_OUT}
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

log() { echo "make-linux-guest: $*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        die "need root for: $*"; fi
}

apt_lists_ready() { ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; }

ensure_tool() { # ensure_tool COMMAND DEBIAN_PACKAGE
    command -v "$1" >/dev/null && return
    apt_lists_ready || as_root apt-get update -q
    log "installing $2 for $1"
    as_root apt-get install -y -q "$2" >/dev/null
}

if [ -s "$OUT/bzImage" ] && [ -s "$OUT/vmlinux" ] && [ -s "$OUT/initramfs.cpio.gz" ]; then
    log "cached, nothing to do"
else
    apt_lists_ready || { log "apt-get update"; as_root apt-get update -q; }
    ensure_tool cpio cpio
    ensure_tool gzip gzip
    ensure_tool readelf binutils

    # The versioned package behind the flavour's metapackage; else the newest 6.1 kernel of
    # that flavour apt knows.
    KPKG=$(apt-cache depends "$META" 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    if [ -z "$KPKG" ]; then
        KPKG=$(apt-cache search --names-only "$KREGEX" |
            awk '{ print $1 }' | sort -V | tail -n 1)
    fi
    [ -n "$KPKG" ] || die "no $FLAVOUR kernel package ($META) found (apt-get update?)"
    log "kernel package: $KPKG"

    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
    # As root, apt would hand the download to the _apt user, who cannot write into $WORK.
    (cd "$WORK" && apt-get download -q -o APT::Sandbox::User=root "$KPKG" busybox-static \
        >/dev/null) ||
        die "apt-get download $KPKG busybox-static failed"
    for deb in "$WORK"/*.deb; do dpkg -x "$deb" "$WORK/root"; done

    # bzImage as shipped.
    if [ ! -s "$OUT/bzImage" ]; then
        VMLINUZ=("$WORK"/root/boot/vmlinuz-*)
        [ -f "${VMLINUZ[0]}" ] || die "$KPKG has no /boot/vmlinuz-*"
        cp "${VMLINUZ[0]}" "$OUT/bzImage"
    fi

    # vmlinux: the payload sits payload_offset bytes into the protected-mode part, which starts
    # at (setup_sects + 1) * 512 (setup_sects 0 means 4); the setup header holds setup_sects at
    # 0x1f1, payload_offset at 0x248 and payload_length at 0x24c.
    if [ ! -s "$OUT/vmlinux" ]; then
        rd() { od -An -t "u$2" -j "$1" -N "$2" "$OUT/bzImage" | tr -d ' '; }
        SETUP_SECTS=$(rd $((0x1f1)) 1)
        [ "$SETUP_SECTS" = 0 ] && SETUP_SECTS=4
        PAYLOAD_OFFSET=$(rd $((0x248)) 4)
        PAYLOAD_LENGTH=$(rd $((0x24c)) 4)
        START=$(((SETUP_SECTS + 1) * 512 + PAYLOAD_OFFSET))
        dd if="$OUT/bzImage" of="$WORK/payload" iflag=skip_bytes,count_bytes bs=1M \
            skip="$START" count="$PAYLOAD_LENGTH" status=none
        MAGIC=$(od -An -t x1 -N 6 "$WORK/payload" | tr -d ' \n')
        case "$MAGIC" in
        fd377a585a00*) ensure_tool xz xz-utils; DECOMP="xz -dc --single-stream" ;;
        28b52ffd*) ensure_tool zstd zstd; DECOMP="zstd -dc" ;;
        1f8b*) DECOMP="gzip -dc" ;;
        02214c18*) ensure_tool lz4 lz4; DECOMP="lz4 -dc" ;;
        *) die "unknown payload compression (magic $MAGIC)" ;;
        esac
        log "payload: ${PAYLOAD_LENGTH} bytes at $START, ${DECOMP%% *}"
        # The kernel appends the decompressed size after the stream: tolerate that trailer.
        $DECOMP <"$WORK/payload" >"$WORK/vmlinux" 2>"$WORK/decomp.err" || true
        readelf -h "$WORK/vmlinux" >/dev/null 2>&1 ||
            die "decompressed payload is not an ELF file: $(cat "$WORK/decomp.err")"
        mv "$WORK/vmlinux" "$OUT/vmlinux"
    fi

    # initramfs: busybox-static, /dev/console (the kernel opens it for init's stdio) and /init.
    if [ ! -s "$OUT/initramfs.cpio.gz" ]; then
        I="$WORK/initramfs"
        mkdir -p "$I/bin" "$I/sbin" "$I/usr/bin" "$I/usr/sbin" "$I/proc" "$I/sys" "$I/dev" \
            "$I/tmp" "$I/etc"
        cp "$WORK/root/bin/busybox" "$I/bin/busybox"
        as_root mknod -m 600 "$I/dev/console" c 5 1
        cat >"$I/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
# `kemu.shell` on the kernel command line: an interactive shell on the console instead.
if grep -qw kemu.shell /proc/cmdline; then
    echo "kemu: busybox shell (poweroff -f to leave)"
    exec setsid cttyhack sh
fi
echo KEMU-LINUX-GUEST-OK
uname -a
cat /proc/cpuinfo
date
echo kemu | tr a-z A-Z
poweroff -f
EOF
        chmod 755 "$I/init"
        (cd "$I" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -9 \
            >"$OUT/initramfs.cpio.gz"
    fi

    BBVER=$(dpkg-deb -f "$WORK"/busybox-static_*.deb Version)
    KVER=$(dpkg-deb -f "$WORK"/"$KPKG"_*.deb Version)
    {
        echo "kernel package: $KPKG $KVER"
        echo "busybox-static: $BBVER"
    } >"$OUT/info.txt"
fi

# PVH: a Xen ELF note of type 18 (XEN_ELFNOTE_PHYS32_ENTRY) holds the 32-bit entry point
# (physical address, little-endian in the note's description).
PVH_ENTRY=$(readelf -n "$OUT/vmlinux" 2>/dev/null | awk '
    /^ *Xen / && /\(0x00000012\)|PHYS32_ENTRY/ { want = 1; next }
    want && /description data:/ { printf "0x%s%s%s%s", $6, $5, $4, $3; exit }')
if [ -n "$PVH_ENTRY" ]; then
    PVH="yes (XEN_ELFNOTE_PHYS32_ENTRY present, entry $PVH_ENTRY)"
else
    PVH="no (no XEN_ELFNOTE_PHYS32_ENTRY note)"
fi
grep -q '^PVH entry note' "$OUT/info.txt" 2>/dev/null || echo "PVH entry note: $PVH" >>"$OUT/info.txt"
log "vmlinux PVH entry note: $PVH"

echo "$OUT/bzImage"
echo "$OUT/vmlinux"
echo "$OUT/initramfs.cpio.gz"
echo "$OUT/info.txt"
