#!/usr/bin/env bash
# The main job on the embedded default: install, start the agent with nothing configured
# (socket /run/taskagent/taskagent.sock), run real containers through our CLI and through
# containerd's ctr, then stop the agent and its supervisor.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
bash scripts/venv.sh
bin=.venv/bin
work=$(mktemp -d /tmp/taskagent-demo.XXXXXX)
sock=/run/taskagent/taskagent.sock

rootfs="$work/rootfs"
mkdir -p "$rootfs"/{bin,dev,proc,sys,tmp,etc,run}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
done

"$bin/taskagent" serve >"$work/agent.log" 2>&1 &
agent=$!
cleanup() {
    kill -TERM "$agent" 2>/dev/null && wait "$agent" || true
    "$bin/taskagent" supervisor stop --force >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { cat "$work/agent.log"; exit 1; }

step() { printf '\n$ %s\n' "$*"; "$@"; }
step "$bin/taskagent" run --rm --rootfs "$rootfs" --hostname demo demo1 -- \
    /bin/sh -c 'echo "hello from $(hostname), pid $$ in its own pid namespace"'
step "$bin/taskagent" run --rm --rootfs "$rootfs" demo2 -- /bin/sh -c 'exit 3' || echo "(exit status $?)"
step timeout -k 5 30 ctr -a "$sock" run --rm --rootfs "$rootfs" demo3 /bin/echo "hello through containerd's ctr"
step timeout -k 5 30 ctr -a "$sock" run -d --rootfs "$rootfs" demo4 /bin/sleep 600
step timeout -k 5 30 ctr -a "$sock" task ls
step timeout -k 5 30 ctr -a "$sock" task exec --exec-id e1 demo4 /bin/sh -c 'echo "exec sees $(ps | wc -l) lines of ps"'
step timeout -k 5 30 ctr -a "$sock" task kill -s SIGKILL demo4
sleep 0.2
step timeout -k 5 30 ctr -a "$sock" task rm demo4
step timeout -k 5 30 ctr -a "$sock" container rm demo4
echo
echo "agent log: $(wc -l <"$work/agent.log") lines; the demo is done"
