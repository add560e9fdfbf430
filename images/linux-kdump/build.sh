#!/bin/bash
# Build the linux-kdump image (docs/linux-kdump.md, "The recipe"): a Debian 12 kernel and ONE
# initramfs whose /init serves the first kernel and the capture kernel.
#
#   build.sh SRC OUT     the build: SRC the source root (images/linux-kdump/ under it), OUT an empty directory
#   build.sh --versions  one line: the SHA-256 of the top-level packages' resolved versions (no download)
#
# The network is used once, by `apt-get download` into a .deb cache ($DUMPBED_DEB_CACHE); the rest
# is offline: dpkg-deb -x into a temporary directory, nothing is installed on the host.
set -euo pipefail

TOP_PACKAGES=(kexec-tools makedumpfile busybox-static)
# The modules the guest loads, with their dependencies (from .modinfo) in front of each:
# virtio-pci (legacy and modern) and virtio-blk; virtio-scsi with the SCSI disk driver.
MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk
         scsi_common scsi_mod virtio_scsi sd_mod)
ARCH_DIR=x86_64-linux-gnu

log() { echo "build.sh: $*" >&2; }
die() { echo "build.sh: error: $*" >&2; exit 1; }

kernel_package() {
    if [[ -n "${DUMPBED_LINUX_KERNEL_PACKAGE:-}" ]]; then
        echo "$DUMPBED_LINUX_KERNEL_PACKAGE"
        return
    fi
    apt-cache pkgnames linux-image-6.1.0- | grep -E '^linux-image-6[.]1[.]0-[0-9]+-amd64$' | sort -V | tail -n1
}

if [[ "${1:-}" == --versions ]]; then
    k=$(kernel_package)
    # the same line as recipe.toml's tool entry (keep the two in step)
    apt-cache policy "$k" "${TOP_PACKAGES[@]}" |
        awk '/^[^ ].*:$/ { n = substr($0, 1, length($0) - 1) } /^ *Candidate:/ { print n "=" $2 }' |
        sha256sum | cut -d' ' -f1
    exit 0
fi

[[ $# -eq 2 ]] || die "usage: build.sh SRC OUT | build.sh --versions"
SRC=$(cd "$1" && pwd)
OUT=$(mkdir -p "$2" && cd "$2" && pwd)
HERE="$SRC/images/linux-kdump"
for tool in apt-get apt-cache dpkg-deb gcc readelf objcopy gzip find sha256sum; do
    command -v "$tool" >/dev/null || die "needs $tool"
done
T0=$(date +%s.%N)

DEBS="${DUMPBED_DEB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dumpbed/debs}"
mkdir -p "$DEBS"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/linux-kdump.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/root"      # every package extracted
IRD="$WORK/initrd"     # the capture initramfs' tree
BOOT="$WORK/boot"      # the part only the first kernel gets
mkdir -p "$ROOT" "$IRD" "$BOOT/boot"

# ---- download (the only network step) and dependency resolution ----------------------------
# Breadth first, one apt-cache and at most one apt-get call per level of dependencies.
declare -A SEEN=()
declare -a LEVEL=() NEXT=() FILES=()
: > "$OUT/packages.txt"

KPKG=$(kernel_package)
[[ -n "$KPKG" ]] || die "no linux-image-6.1.0-*-amd64 package in the apt lists"
LEVEL=("$KPKG" "${TOP_PACKAGES[@]}")
for p in "${LEVEL[@]}"; do SEEN[$p]=1; done
while ((${#LEVEL[@]})); do
    declare -A VER=()
    while read -r name ver; do VER[$name]=$ver; done < <(apt-cache policy "${LEVEL[@]}" 2>/dev/null |
        awk '/^[^ ].*:$/ { name = substr($0, 1, length($0) - 1); sub(/:amd64$/, "", name) }
             /^ *Candidate:/ { print name, $2 }')
    missing=()
    for pkg in "${LEVEL[@]}"; do
        ver=${VER[$pkg]:-}
        [[ -n "$ver" && "$ver" != "(none)" ]] || die "no candidate version of $pkg in the apt lists (apt-get update?)"
        compgen -G "$DEBS/${pkg}_${ver//:/%3a}_*.deb" >/dev/null || missing+=("$pkg=$ver")
    done
    if ((${#missing[@]})); then
        log "apt-get download ${missing[*]}"
        (cd "$DEBS" && apt-get download -q "${missing[@]}" >&2) || die "apt-get download failed"
    fi
    NEXT=()
    for pkg in "${LEVEL[@]}"; do
        ver=${VER[$pkg]}
        deb=$(compgen -G "$DEBS/${pkg}_${ver//:/%3a}_*.deb" | head -n1 || true)
        [[ -n "$deb" ]] || die "apt-get download $pkg=$ver left no ${pkg}_${ver//:/%3a}_*.deb in $DEBS"
        echo "$pkg $ver" >> "$OUT/packages.txt"
        FILES+=("$deb")
        [[ "$pkg" == "$KPKG" ]] && continue  # its Depends are install-time tools (kmod, initramfs-tools)
        deps=$( { dpkg-deb -f "$deb" Pre-Depends; dpkg-deb -f "$deb" Depends; } | tr '\n' ',')
        IFS=',' read -r -a alts <<< "$deps"
        for alt in "${alts[@]}"; do
            first=${alt%%|*}                      # the first alternative
            name=$(sed -E 's/\(.*\)//; s/:[a-z0-9]+//; s/[[:space:]]//g' <<< "$first")
            [[ -n "$name" ]] || continue
            [[ "$name" =~ ^(lib|zlib1g$) ]] || continue   # libraries only: debconf, perl, ... are not needed
            [[ -n "${SEEN[$name]:-}" ]] && continue
            SEEN[$name]=1
            NEXT+=("$name")
        done
    done
    unset VER
    LEVEL=("${NEXT[@]}")
done
log "$(wc -l < "$OUT/packages.txt") packages; extracting"

for deb in "${FILES[@]}"; do dpkg-deb -x "$deb" "$ROOT"; done
KVER=$(basename "$(compgen -G "$ROOT/lib/modules/*" | head -n1)")
[[ -n "$KVER" && -f "$ROOT/boot/vmlinuz-$KVER" ]] || die "no kernel in $KPKG"

# ---- the initramfs tree -------------------------------------------------------------------
mkdir -p "$IRD"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,mnt,root,etc,lib/modules,lib/$ARCH_DIR,lib64}
BUSYBOX="$ROOT/bin/busybox"
[[ -x "$BUSYBOX" ]] || die "busybox-static has no /bin/busybox"
cp "$BUSYBOX" "$IRD/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [[ -e "$IRD/bin/$applet" ]] || ln -s busybox "$IRD/bin/$applet"
done
cp "$ROOT/sbin/kexec" "$ROOT/sbin/vmcore-dmesg" "$IRD/sbin/"
cp "$ROOT/usr/bin/makedumpfile" "$IRD/usr/bin/makedumpfile"
gcc -static -O2 -Wall -o "$IRD/bin/agent" "$HERE/agent.c"
install -m 0755 "$HERE/init" "$IRD/init"
install -m 0755 "$HERE/dumpbed-panic" "$IRD/bin/dumpbed-panic"
echo "root:x:0:0:root:/root:/bin/sh" > "$IRD/etc/passwd"
if [[ $(id -u) -eq 0 ]]; then
    mknod -m 600 "$IRD/dev/console" c 5 1
else
    log "not root: no dev/console node (the kernel warns; /init mounts devtmpfs and reopens its console)"
fi

# the shared libraries: the DT_NEEDED closure, found in the extracted packages only
LIBDIRS=("$ROOT/lib/$ARCH_DIR" "$ROOT/usr/lib/$ARCH_DIR" "$ROOT/lib64" "$ROOT/lib" "$ROOT/usr/lib")
declare -A HAVE=()
in_root() {  # a path inside ROOT -> the file it names, its symlinks resolved inside ROOT (never the host's)
    local p=$1 t n=0
    while [[ -L "$p" ]]; do
        t=$(readlink "$p")
        if [[ "$t" == /* ]]; then p="$ROOT$t"; else p="$(dirname "$p")/$t"; fi
        n=$((n + 1)); [[ $n -lt 20 ]] || die "symlink loop at $1"
    done
    [[ -f "$p" ]] || die "$1 names no file in the packages"
    echo "$p"
}
need_libs() {  # ELF file
    local lib dir found
    for lib in $(readelf -d "$1" | sed -nE 's/.*\(NEEDED\).*\[(.*)\]/\1/p'); do
        [[ -n "${HAVE[$lib]:-}" ]] && continue
        found=""
        for dir in "${LIBDIRS[@]}"; do
            if [[ -e "$dir/$lib" || -L "$dir/$lib" ]]; then found=$(in_root "$dir/$lib"); break; fi
        done
        [[ -n "$found" ]] || die "$lib (needed by $(basename "$1")) is in none of the downloaded packages"
        HAVE[$lib]=1
        cp -L "$found" "$IRD/lib/$ARCH_DIR/$lib"
        need_libs "$IRD/lib/$ARCH_DIR/$lib"
    done
}
need_libs "$IRD/sbin/kexec"
need_libs "$IRD/usr/bin/makedumpfile"
need_libs "$IRD/sbin/vmcore-dmesg"
INTERP=$(readelf -l "$IRD/sbin/kexec" | sed -nE 's/.*Requesting program interpreter: (.*)\]/\1/p')
[[ -n "$INTERP" ]] || die "kexec has no program interpreter"
mkdir -p "$IRD/$(dirname "$INTERP")"
cp "$(in_root "$ROOT$INTERP")" "$IRD$INTERP"

# the modules, each after its dependencies (the .deb has no modules.dep: read .modinfo)
declare -A KO=() LOADED=()
while IFS= read -r f; do
    n=${f##*/}; n=${n%.ko}; KO[${n//-/_}]=$f
done < <(find "$ROOT/lib/modules/$KVER/kernel" -name '*.ko')
[[ ${#KO[@]} -gt 0 ]] || die "no .ko modules in $KPKG (compressed modules are not supported)"
: > "$IRD/lib/modules.load"
add_module() {
    local m=${1//-/_} dep f
    [[ -n "${LOADED[$m]:-}" ]] && return 0
    f=${KO[$m]:-}
    if [[ -z "$f" ]]; then
        grep -qE "/${1}.ko$|/${m}.ko$" "$ROOT/lib/modules/$KVER/modules.builtin" && return 0  # built in
        die "module $1 is in neither the kernel's modules nor modules.builtin"
    fi
    LOADED[$m]=1
    objcopy -O binary --only-section=.modinfo "$f" "$WORK/modinfo"
    for dep in $(tr '\0' '\n' < "$WORK/modinfo" | sed -n 's/^depends=//p' | tr ',' ' '); do
        add_module "$dep"
    done
    cp "$f" "$IRD/lib/modules/$(basename "$f")"
    basename "$f" >> "$IRD/lib/modules.load"
}
for m in "${MODULES[@]}"; do add_module "$m"; done
log "modules: $(tr '\n' ' ' < "$IRD/lib/modules.load")"

# ---- the archives ---------------------------------------------------------------------------
cpio_newc() {  # directory -> a newc archive on stdout, made by the package's busybox
    (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | "$BUSYBOX" cpio -o -H newc 2>/dev/null)
}
cpio_newc "$IRD" | gzip -9 -n > "$OUT/initrd-capture"
cp "$ROOT/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
cp "$ROOT/boot/config-$KVER" "$OUT/config"
cp "$OUT/vmlinuz" "$BOOT/boot/vmlinuz"
cp "$OUT/initrd-capture" "$BOOT/boot/initrd-capture"
# the first kernel's initrd: the capture initramfs, then a second gzip'd archive with the files
# kexec -p loads (gzip -1: its contents are compressed already; a raw newc archive after a gzip'd
# one was not unpacked by this kernel)
{ cat "$OUT/initrd-capture"; cpio_newc "$BOOT" | gzip -1 -n; } > "$OUT/initrd"

sort -o "$OUT/packages.txt" "$OUT/packages.txt"
log "built $KVER in $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s:" \
    "vmlinuz $(stat -c %s "$OUT/vmlinuz"), initrd-capture $(stat -c %s "$OUT/initrd-capture")," \
    "initrd $(stat -c %s "$OUT/initrd") bytes"
