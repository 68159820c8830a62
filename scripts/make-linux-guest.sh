#!/usr/bin/env bash
# make-linux-guest.sh [OUT_DIR [FLAVOUR]]: assemble kemu's real-Linux test guest from Debian's
# packages. FLAVOUR is `cloud` (default: linux-image-*-cloud-amd64) or `generic`
# (linux-image-*-amd64, the kernel Debian installs on PCs).
#
# Outputs in OUT_DIR (default build/linux-guest, or build/linux-guest-generic, which git ignores):
#   bzImage             Debian's kernel of that flavour (newest 6.1), as shipped
#   vmlinux             the ELF kernel unpacked from bzImage's compressed payload
#   initramfs.cpio.gz   busybox-static, the kernel's virtio block modules (those not built in,
#                       from the same package, decompressed) and an /init that prints
#                       KEMU-LINUX-GUEST-OK, runs a few commands (uname, /proc/cpuinfo, date, a
#                       pipeline) and powers off. Switches on the kernel command line:
#                         kemu.shell      a shell on the console instead
#                         kemu.disktest   /bin/kemu-disktest: checksums, a pattern write, checksums
#                         kemu.diskbench  /bin/kemu-diskbench: timed sequential dd runs
#                       (their parameters are described in those scripts, below)
#   initramfs.version   the version of this script's initramfs the cached one was made with
#   info.txt            the package versions and whether vmlinux has a PVH entry note
# Cached: an output that exists is not made again (delete it to rebuild); an initramfs from an
# older version of this script is rebuilt, against the cached kernel's exact package version.
# Non-interactive; needs root for apt-get (it installs what is missing: cpio, xz-utils/zstd/gzip).
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

# add_virtio_block_modules DIR: the virtio block driver stack of the unpacked kernel package
# ($WORK/root), minus what the kernel has built in, decompressed into DIR (busybox insmod loads
# plain .ko files) with DIR/order listing them dependencies first. The package has no
# modules.dep (depmod makes it on install): each module's own `depends=` (.modinfo) is read.
add_virtio_block_modules() {
    local dir=$1 moddir f b
    moddir=$(find "$WORK/root/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n 1)
    [ -n "$moddir" ] || die "$KPKG has no /lib/modules/VERSION"
    declare -gA MOD_FILE=() MOD_BUILTIN=() MOD_SEEN=()
    MOD_ORDER=()
    while read -r f; do
        b=${f##*/}
        b=${b%%.ko*}
        MOD_FILE[${b//-/_}]=$f
    done < <(find "$moddir/kernel" -name '*.ko*')
    while read -r f; do
        b=${f##*/}
        b=${b%%.ko*}
        MOD_BUILTIN[${b//-/_}]=1
    done <"$moddir/modules.builtin"
    mkdir -p "$dir"
    for b in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
        add_module "$dir" "$b"
    done
    printf '%s\n' "${MOD_ORDER[@]}" >"$dir/order"
    log "virtio block modules in the initramfs: ${MOD_ORDER[*]:-(all built in)}"
}

# add_module DIR NAME: NAME's dependencies, then NAME itself, unless built in or already there.
add_module() {
    local dir=$1 name=${2//-/_} src dep
    [ -z "${MOD_SEEN[$name]:-}" ] || return 0
    MOD_SEEN[$name]=1
    [ -z "${MOD_BUILTIN[$name]:-}" ] || return 0
    src=${MOD_FILE[$name]:-}
    [ -n "$src" ] || die "module $name is neither built into nor shipped with $KPKG"
    case "$src" in
    *.ko) cat "$src" ;;
    *.ko.xz) ensure_tool xz xz-utils; xz -dc "$src" ;;
    *.ko.zst) ensure_tool zstd zstd; zstd -dc "$src" ;;
    *.ko.gz) gzip -dc "$src" ;;
    *) die "module $src: unknown compression" ;;
    esac >"$dir/$name.ko"
    for dep in $(tr '\0' '\n' <"$dir/$name.ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
        add_module "$dir" "$dep"
    done
    MOD_ORDER+=("$name")
}

# write_disk_scripts BINDIR: the guest's virtio disk test and benchmark (busybox sh).
write_disk_scripts() {
    cat >"$1/kemu-virtio-disks" <<'EOF'
#!/bin/busybox sh
# kemu-virtio-disks: load the virtio block modules (/lib/modules/kemu/order), wait up to 20 s
# for each disk of `kemu.disks=vda,vdb` (default vda) and print the names that came, one a line.
echo "kemu: loading the virtio block modules" >&2
for m in $(cat /lib/modules/kemu/order); do
    insmod "/lib/modules/kemu/$m.ko" || echo "kemu: insmod $m failed" >&2
done
disks=vda
for w in $(cat /proc/cmdline); do
    case "$w" in kemu.disks=*) disks=$(echo "${w#*=}" | tr ',' ' ') ;; esac
done
for d in $disks; do
    n=0
    while [ ! -b "/dev/$d" ] && [ "$n" -lt 200 ]; do sleep 0.1; n=$((n + 1)); done
    if [ -b "/dev/$d" ]; then echo "$d"; else echo "kemu: no /dev/$d" >&2; fi
done
EOF
    cat >"$1/kemu-disktest" <<'EOF'
#!/bin/busybox sh
# kemu-disktest: for each disk of `kemu.disks=` (kemu-virtio-disks): the sha256 of the whole
# disk read with O_DIRECT, then a pattern written at `kemu.pattern=OFF_KIB+LEN_KIB` (default
# 64+256): LEN KiB of `yes kemu-DISK` ("kemu-vda\n" repeated, cut at LEN KiB) at OFF KiB,
# fsync'd, then `sync`, dropped caches and the sha256 again. Prints
#   KEMU-DISK vda size BYTES / before SHA / wrote LEN KiB at OFF KiB / after SHA
# and KEMU-DISK-DONE at the end (KEMU-DISK vda error ... on failures), through the kernel log
# (/dev/kmsg, unthrottled): printk reaches the serial console synchronously, where tty output
# can still sit in the 8250's buffer when poweroff -f comes.
echo on >/proc/sys/kernel/printk_devkmsg
say() { echo "$*" >/dev/kmsg; }
pattern=64+256
for w in $(cat /proc/cmdline); do
    case "$w" in kemu.pattern=*) pattern=${w#*=} ;; esac
done
off=${pattern%+*}
len=${pattern#*+}
sum() { dd if="/dev/$1" bs=64k iflag=direct status=none | sha256sum | cut -d' ' -f1; }
for d in $(kemu-virtio-disks); do
    say "KEMU-DISK $d size $(($(cat "/sys/block/$d/size") * 512))"
    say "KEMU-DISK $d before $(sum "$d")"
    if yes "kemu-$d" | head -c $((len * 1024)) |
        dd of="/dev/$d" bs=1024 seek="$off" iflag=fullblock conv=notrunc,fsync status=none; then
        say "KEMU-DISK $d wrote $len KiB at $off KiB"
    else
        say "KEMU-DISK $d error writing $len KiB at $off KiB"
    fi
    sync
    echo 3 >/proc/sys/vm/drop_caches
    say "KEMU-DISK $d after $(sum "$d")"
done
say KEMU-DISK-DONE
EOF
    cat >"$1/kemu-diskbench" <<'EOF'
#!/bin/busybox sh
# kemu-diskbench: for each disk of `kemu.disks=` (kemu-virtio-disks), sequential O_DIRECT dd
# runs from the disk's start: 1 MiB writes (from /dev/zero) and reads of `kemu.bench_big_mib=`
# MiB (default 64), then 4 KiB writes and reads of `kemu.bench_mib=` MiB (default 16), in that
# order (so the reads and the 4 KiB writes meet allocated qcow2 clusters). Times come from /proc/uptime (10 ms steps). Prints
#   KEMU-BENCH DISK write|read BLOCK_BYTES TOTAL_BYTES CENTISECONDS
# and KEMU-BENCH-DONE at the end, through the kernel log like kemu-disktest.
echo on >/proc/sys/kernel/printk_devkmsg
say() { echo "$*" >/dev/kmsg; }
small=16
big=64
for w in $(cat /proc/cmdline); do
    case "$w" in
    kemu.bench_mib=*) small=${w#*=} ;;
    kemu.bench_big_mib=*) big=${w#*=} ;;
    esac
done
now() { awk '{ printf "%d\n", $1 * 100 }' /proc/uptime; }
run() { # run DISK write|read BLOCK_BYTES MIB
    mib=$4
    count=$((mib * 1048576 / $3))
    t0=$(now)
    if [ "$2" = write ]; then
        dd if=/dev/zero of="/dev/$1" bs="$3" count="$count" oflag=direct conv=notrunc status=none
    else
        dd if="/dev/$1" of=/dev/null bs="$3" count="$count" iflag=direct status=none
    fi || say "KEMU-BENCH $1 error $2 $3"
    t1=$(now)
    say "KEMU-BENCH $1 $2 $3 $((mib * 1048576)) $((t1 - t0))"
}
for d in $(kemu-virtio-disks); do
    run "$d" write 1048576 "$big"
    run "$d" read 1048576 "$big"
    run "$d" write 4096 "$small"
    run "$d" read 4096 "$small"
done
say KEMU-BENCH-DONE
EOF
    chmod 755 "$1/kemu-virtio-disks" "$1/kemu-disktest" "$1/kemu-diskbench"
}

# Bump when the initramfs's contents change: a cached initramfs with another stamp is rebuilt.
INITRAMFS_VERSION=5
if [ -s "$OUT/initramfs.cpio.gz" ] &&
    [ "$(cat "$OUT/initramfs.version" 2>/dev/null)" != "$INITRAMFS_VERSION" ]; then
    log "initramfs made by an older version of this script: rebuilding it"
    rm -f "$OUT/initramfs.cpio.gz"
fi

if [ -s "$OUT/bzImage" ] && [ -s "$OUT/vmlinux" ] && [ -s "$OUT/initramfs.cpio.gz" ]; then
    log "cached, nothing to do"
else
    apt_lists_ready || { log "apt-get update"; as_root apt-get update -q; }
    ensure_tool cpio cpio
    ensure_tool gzip gzip
    ensure_tool readelf binutils

    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
    # As root, apt would hand the download to the _apt user, who cannot write into $WORK.
    download() { (cd "$WORK" && apt-get download -q -o APT::Sandbox::User=root "$@" >/dev/null); }

    # The initramfs carries the kernel's modules, so a cached kernel pins the package version
    # (info.txt names it); if apt no longer has that version, everything is made anew.
    KPKG=
    if [ -s "$OUT/bzImage" ] || [ -s "$OUT/vmlinux" ]; then
        read -r _ _ KPKG KVER_PIN < <(grep '^kernel package: ' "$OUT/info.txt" 2>/dev/null) || true
        if [ -n "$KPKG" ] && [ -n "${KVER_PIN:-}" ] && download "$KPKG=$KVER_PIN" busybox-static; then
            log "kernel package: $KPKG $KVER_PIN (the cached kernel's)"
        else
            log "the cached kernel's package is unknown or gone: making everything anew"
            rm -f "$OUT/bzImage" "$OUT/vmlinux" "$OUT/initramfs.cpio.gz" "$OUT/info.txt" "$WORK"/*.deb
            KPKG=
        fi
    fi
    if [ -z "$KPKG" ]; then
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
        download "$KPKG" busybox-static || die "apt-get download $KPKG busybox-static failed"
    fi
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
        add_virtio_block_modules "$I/lib/modules/kemu"
        write_disk_scripts "$I/bin"
        cat >"$I/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
# Power off once the console is quiet: its output goes out by transmit interrupts after
# `write` returned, and `poweroff -f` does not wait for them. Waits until the UART's transmit
# count stops moving (at most 1 s).
off() {
    last=; n=0
    while [ $n -lt 20 ]; do
        now=$(grep -o 'tx:[0-9]*' /proc/tty/driver/serial | head -n 1)
        [ "$now" = "$last" ] && break
        last=$now; n=$((n + 1)); sleep 0.05
    done
    poweroff -f
}
# `kemu.shell` on the kernel command line: an interactive shell on the console instead.
if grep -qw kemu.shell /proc/cmdline; then
    echo "kemu: busybox shell (poweroff -f to leave)"
    exec setsid cttyhack sh
fi
# `kemu.disktest` / `kemu.diskbench`: the virtio disk test or benchmark, then power off.
if grep -qw kemu.disktest /proc/cmdline; then kemu-disktest; off; fi
if grep -qw kemu.diskbench /proc/cmdline; then kemu-diskbench; off; fi
echo KEMU-LINUX-GUEST-OK
uname -a
cat /proc/cpuinfo
date
echo kemu | tr a-z A-Z
off
EOF
        chmod 755 "$I/init"
        (cd "$I" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -9 \
            >"$OUT/initramfs.cpio.gz"
        echo "$INITRAMFS_VERSION" >"$OUT/initramfs.version"
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
