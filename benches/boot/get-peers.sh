#!/bin/bash
# wrk (load generator) and nginx (the machine's HTTPS ceiling) for benches/boot, from Debian's packages.
# The benchmark starts its own nginx on a loopback port; the packaged service is kept off.
set -euo pipefail
missing=()
command -v wrk >/dev/null || missing+=(wrk)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
    systemctl disable --now nginx
  fi
fi
