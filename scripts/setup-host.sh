#!/usr/bin/env bash
# Debian packages the agent's tests and demo use: containerd's ctr (the real client), runc
# and containerd (the reference the benchmarks compare against), busybox-static (the test
# rootfs), tmux (drives terminal tests), criu and iptables (checkpoint/restore and CRIU's
# network lock; Debian 13's CRIU works on current kernels, Debian 12's is too old for them and
# the live checkpoint tests then skip, saying so).
set -euo pipefail
packages=(containerd runc busybox-static tmux iptables criu)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian's containerd package would start a daemon where systemd runs; ours start their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet containerd 2>/dev/null; then
    echo "note: a system containerd is running; tests and benchmarks use their own sockets"
fi
