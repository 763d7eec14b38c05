#!/usr/bin/env bash
# Installs what building and testing Switchboard needs, only when missing:
# Debian packages (as root, or through sudo) and the npm test clients.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=(build-essential pkg-config clang libclang-rt-14-dev libuv1-dev
          libjansson-dev libsqlite3-dev libssl-dev libcmocka-dev libcurl4-openssl-dev
          prometheus nodejs npm curl ca-certificates)
missing=()
for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm may come from elsewhere than Debian: accept them if present
if command -v node >/dev/null && command -v npm >/dev/null; then
    missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -ra missing <<< "${missing[*]}"
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    # Packages such as prometheus (we only need its promtool) would start
    # a daemon listening on every interface: forbid service starts during
    # the install (Debian's policy-rc.d) and keep the units disabled.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod 755 "$policy"
        trap '$SUDO rm -f "$policy"' EXIT
    fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
fi

if [ -f tests/e2e/package.json ] && [ ! -d tests/e2e/node_modules ]; then
    echo "installing npm test clients"
    (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
