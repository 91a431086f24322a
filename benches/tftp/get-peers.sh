#!/bin/bash
# The peer servers for benches/tftp/run.py: tftpd-hpa and dnsmasq from Debian's packages (installed
# without starting their services: policy-rc.d must refuse starts, as /usr/sbin/policy-rc.d does
# here), atftpd unpacked privately into benches/tftp/.peers (its package conflicts with tftpd-hpa).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
fi
command -v in.tftpd >/dev/null || [ -x /usr/sbin/in.tftpd ] || apt-get install -y -q tftpd-hpa
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || apt-get install -y -q dnsmasq-base
if [ ! -x "$here/.peers/atftpd-root/usr/sbin/atftpd" ]; then
  mkdir -p "$here/.peers"
  (cd "$here/.peers" && apt-get download atftpd && dpkg-deb -x atftpd_*.deb atftpd-root)
fi
echo "peers ready: $(command -v in.tftpd || echo /usr/sbin/in.tftpd), $(command -v dnsmasq), $here/.peers/atftpd-root/usr/sbin/atftpd"
