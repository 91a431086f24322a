#!/usr/bin/env bash
# The VM lab's artefacts for tests/e2e (run as root on Debian 12):
#
#   tests/e2e/lab.sh prepare   fetch Debian trixie's iPXE boot programs, a Debian kernel and build the
#                              test initramfs into $BOOTGATE_LAB_DIR (default <checkout>/.lab, gitignored)
#   tests/e2e/lab.sh clean     remove what `prepare` made
#   tests/e2e/lab.sh path      print the lab directory
#
# Nothing is installed into the system: the kernel .deb and trixie's ipxe .deb are fetched with
# `apt-get download` and unpacked with `dpkg-deb -x` into the lab directory. Trixie's package list comes
# from a private sources list (the system's apt sources and lists stay as they are).
# (busybox 1.35 wget -T segfaults: the init script does not use it.)
# Idempotent: a second run checks a stamp and returns at once.
#
# Layout made by prepare:
#   .lab/ipxe-trixie/   undionly.kpxe snponly.efi ipxe.efi ... (the TFTP root for bootgate)
#   .lab/content/       vmlinuz initrd.img (bootgate's content root for the e2e test)
#   .lab/apt-trixie/    private apt state for trixie (lists, cache)
#   .lab/debs/          the downloaded .debs
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
LAB=${BOOTGATE_LAB_DIR:-$repo/.lab}
# Bump when the recipe changes, so `prepare` rebuilds.
RECIPE=1
# Modules the initramfs loads (with their dependencies from modules.dep), if not built in.
WANT_MODULES=(virtio_pci virtio_net e1000)

log() { printf 'lab.sh: %s\n' "$*" >&2; }
die() { printf 'lab.sh: error: %s\n' "$*" >&2; exit 1; }

stamp_value() {
  # What the artefacts depend on: the recipe, the init script, and this file.
  cat "$here/lab.sh" "$here/initramfs/init" "$here/initramfs/udhcpc.script" | sha256sum | cut -d' ' -f1
}

trixie_apt() {
  local d=$LAB/apt-trixie
  apt-get -q \
    -o Dir::Etc::SourceList="$d/sources.list" \
    -o Dir::Etc::SourceParts="$d/sources.list.d" \
    -o Dir::State::Lists="$d/lists" \
    -o Dir::Cache="$d/cache" \
    -o Dir::Etc::Preferences="$d/preferences" \
    -o Dir::Etc::PreferencesParts="$d/preferences.d" \
    -o Acquire::Languages=none \
    -o APT::Get::List-Cleanup=false \
    -o APT::Sandbox::User=root \
    "$@"
}

fetch_ipxe_trixie() {
  local d=$LAB/apt-trixie out=$LAB/ipxe-trixie
  if [ -s "$out/undionly.kpxe" ] && [ -s "$out/snponly.efi" ]; then
    return 0
  fi
  mkdir -p "$d/sources.list.d" "$d/lists/partial" "$d/cache/archives/partial" "$d/preferences.d" "$LAB/debs"
  : > "$d/preferences"
  cat > "$d/sources.list" <<'EOF'
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
EOF
  log "updating the private trixie package list"
  trixie_apt update >/dev/null
  log "downloading trixie's ipxe .deb"
  (cd "$LAB/debs" && rm -f ipxe_*.deb && trixie_apt download ipxe >/dev/null)
  local deb
  deb=$(ls "$LAB/debs"/ipxe_*.deb | head -n1)
  [ -n "$deb" ] || die "apt-get download ipxe (trixie) produced no .deb"
  rm -rf "$LAB/ipxe-trixie-root" "$out.tmp"
  dpkg-deb -x "$deb" "$LAB/ipxe-trixie-root"
  mkdir -p "$out.tmp"
  cp -L "$LAB/ipxe-trixie-root"/usr/lib/ipxe/*.kpxe "$LAB/ipxe-trixie-root"/usr/lib/ipxe/*.efi "$out.tmp"/ 2>/dev/null || true
  [ -s "$out.tmp/undionly.kpxe" ] || die "$deb has no usr/lib/ipxe/undionly.kpxe"
  [ -s "$out.tmp/snponly.efi" ] || die "$deb has no usr/lib/ipxe/snponly.efi"
  basename "$deb" > "$out.tmp/SOURCE"
  rm -rf "$out" && mv "$out.tmp" "$out"
  log "trixie iPXE from $(basename "$deb") in $out"
}

fetch_kernel() {
  local kd=$LAB/kernel
  if [ -s "$kd/vmlinuz" ] && [ -n "$(ls "$kd"/root/lib/modules/*/modules.dep 2>/dev/null)" ]; then
    return 0
  fi
  # The running distribution's (bookworm) amd64 kernel; the meta package names the real one.
  local pkg
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  if [ -z "$pkg" ]; then
    log "apt-cache knows no linux-image-amd64: running apt-get update"
    apt-get update -q >/dev/null
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  fi
  [ -n "$pkg" ] || die "cannot resolve linux-image-amd64 to a kernel package"
  mkdir -p "$LAB/debs"
  log "downloading $pkg"
  (cd "$LAB/debs" && rm -f linux-image-*.deb && apt-get -q -o APT::Sandbox::User=root download "$pkg" >/dev/null)
  local deb
  deb=$(ls "$LAB/debs"/linux-image-*.deb | head -n1)
  rm -rf "$kd.tmp" && mkdir -p "$kd.tmp"
  dpkg-deb -x "$deb" "$kd.tmp/root"
  local kver
  kver=$(ls "$kd.tmp/root/lib/modules" | head -n1)
  cp "$kd.tmp/root/boot/vmlinuz-$kver" "$kd.tmp/vmlinuz"
  # The .deb has no modules.dep (made at install time): make it in the private tree.
  depmod -b "$kd.tmp/root" "$kver"
  echo "$kver" > "$kd.tmp/KVER"
  basename "$deb" > "$kd.tmp/SOURCE"
  rm -rf "$kd" && mv "$kd.tmp" "$kd"
  log "kernel $kver from $(basename "$deb")"
}

# Prints the module files (relative to /lib/modules/KVER) for the wanted modules and their
# dependencies, dependencies first, each once. Built-in modules print nothing.
module_closure() {
  local mdir=$1; shift
  python3 - "$mdir" "$@" <<'EOF'
import sys, os
mdir, wanted = sys.argv[1], sys.argv[2:]
deps = {}
with open(os.path.join(mdir, "modules.dep")) as f:
    for line in f:
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
byname = {}
for path in deps:
    base = os.path.basename(path)
    name = base.split(".ko")[0].replace("-", "_")
    byname[name] = path
builtin = set()
try:
    with open(os.path.join(mdir, "modules.builtin")) as f:
        for line in f:
            builtin.add(os.path.basename(line.strip()).split(".ko")[0].replace("-", "_"))
except FileNotFoundError:
    pass
order, seen = [], set()
def visit(path):
    if path in seen:
        return
    seen.add(path)
    for d in deps.get(path, []):
        visit(d)
    order.append(path)
for w in wanted:
    w = w.replace("-", "_")
    if w in byname:
        visit(byname[w])
    elif w in builtin:
        continue
    else:
        sys.exit(f"module {w} is neither in modules.dep nor built in")
print("\n".join(order))
EOF
}

build_initramfs() {
  local kd=$LAB/kernel out=$LAB/content work
  local kver
  kver=$(cat "$kd/KVER")
  local mdir=$kd/root/lib/modules/$kver
  work=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  mkdir -p "$work"/{bin,sbin,dev,proc,sys,tmp,run,etc/udhcpc,lib/modules,usr/bin,usr/sbin}
  cp /bin/busybox "$work/bin/busybox"
  ln -s busybox "$work/bin/sh"
  install -m 0755 "$here/initramfs/init" "$work/init"
  install -m 0755 "$here/initramfs/udhcpc.script" "$work/etc/udhcpc/default.script"
  local list=() m closure
  closure=$(module_closure "$mdir" "${WANT_MODULES[@]}") || die "cannot resolve the initramfs modules"
  mapfile -t list <<< "$closure"
  : > "$work/lib/modules/load-order"
  for m in "${list[@]}"; do
    [ -n "$m" ] || continue
    local base
    base=$(basename "$m")
    case "$base" in
      *.ko.xz) xz -dc "$mdir/$m" > "$work/lib/modules/${base%.xz}"; base=${base%.xz} ;;
      *.ko.zst) zstd -qdc "$mdir/$m" > "$work/lib/modules/${base%.zst}"; base=${base%.zst} ;;
      *.ko.gz) gzip -dc "$mdir/$m" > "$work/lib/modules/${base%.gz}"; base=${base%.gz} ;;
      *) cp "$mdir/$m" "$work/lib/modules/$base" ;;
    esac
    echo "$base" >> "$work/lib/modules/load-order"
  done
  mkdir -p "$out"
  (cd "$work" && find . -print0 | sort -z | cpio --null -o -H newc --quiet) | gzip -9 > "$out/initrd.img.tmp"
  mv "$out/initrd.img.tmp" "$out/initrd.img"
  cp "$kd/vmlinuz" "$out/vmlinuz"
  log "initramfs with modules: $(tr '\n' ' ' < "$work/lib/modules/load-order")"
}

prepare() {
  [ "$(id -u)" = 0 ] || die "prepare needs root (apt-get download of trixie's ipxe)"
  mkdir -p "$LAB"
  local want
  want="$RECIPE-$(stamp_value)"
  if [ -f "$LAB/prepared" ] && [ "$(cat "$LAB/prepared")" = "$want" ] \
     && [ -s "$LAB/ipxe-trixie/undionly.kpxe" ] && [ -s "$LAB/content/initrd.img" ] && [ -s "$LAB/content/vmlinuz" ]; then
    log "already prepared in $LAB"
    return 0
  fi
  fetch_ipxe_trixie
  fetch_kernel
  build_initramfs
  echo "$want" > "$LAB/prepared"
  log "prepared in $LAB"
}

case "${1:-}" in
  prepare) prepare ;;
  clean) rm -rf "$LAB/ipxe-trixie" "$LAB/ipxe-trixie-root" "$LAB/kernel" "$LAB/content" "$LAB/debs" "$LAB/apt-trixie" "$LAB/prepared" ;;
  path) echo "$LAB" ;;
  *) echo "usage: $0 prepare|clean|path" >&2; exit 2 ;;
esac
