#!/usr/bin/env bash
# Installs everything bootgate's test suite needs on a fresh Debian 12 machine (run as root).
# Idempotent: a second run only checks. Nothing it installs starts a daemon on a real interface.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

need_pkgs=(qemu-system-x86 ipxe-qemu ovmf dnsmasq-base iproute2 openssl busybox-static tftp-hpa atftp cpio curl
           kmod xz-utils tcpdump debian-archive-keyring postgresql slapd ldap-utils
           freeradius freeradius-utils freeradius-rest libssl-dev pkg-config prometheus ndisc6)  # prometheus: promtool lints the /metrics text (its daemon is never started); ndisc6: rdisc6 sends the Router Solicitations of the RA responder test; libssl-dev, pkg-config: bootgate-io hashes with libcrypto; freeradius*: MAB tests run private servers; kmod: depmod for the e2e kernel; tcpdump: e2e DHCP capture; postgresql: store tests (private cluster, never the system one)
# samba*: the NPS MAB test runs a private Samba AD DC on a loopback address (its own dirs; policy-rc.d below keeps
# the packaged daemons from starting); rlm_sql_sqlite for the FreeRADIUS SQL MAB test ships in freeradius
need_pkgs+=(samba samba-ad-dc samba-ad-provision)
missing=()
for p in "${need_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  # Keep package scripts from starting daemons (no systemd here; never on the real interface).
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  fi
  # slapd: no system directory; the LDAP tests start their own private slapd.
  echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The VM lab's boot programs, kernel and initramfs (tests/e2e/lab.sh owns the details).
if [ -f "$here/tests/e2e/lab.sh" ]; then
  bash "$here/tests/e2e/lab.sh" prepare
fi
