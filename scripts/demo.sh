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
# Ready when its log says so; if it stops instead (say, another agent already serves on the
# socket), show why.
for _ in $(seq 300); do
    grep -q "serving on" "$work/agent.log" && break
    kill -0 "$agent" 2>/dev/null || break
    sleep 0.1
done
grep -q "serving on" "$work/agent.log" || { cat "$work/agent.log"; exit 1; }

# Each command is shown quoted, ready to paste.
step() { printf '\n$'; printf ' %q' "$@"; printf '\n'; "$@"; }
fifo="$work/fifo"  # ctr's stdio fifos for detached tasks (by default left in /run/containerd)
step "$bin/taskagent" run --rm --rootfs "$rootfs" --hostname demo demo1 -- \
    /bin/sh -c 'echo "hello from $(hostname), pid $$ in its own pid namespace"'
step "$bin/taskagent" run --rm --rootfs "$rootfs" demo2 -- /bin/sh -c 'exit 3' || echo "(exit status $?)"
step timeout -k 5 30 ctr -a "$sock" run --rm --rootfs "$rootfs" demo3 /bin/echo "hello through containerd's ctr"
step timeout -k 5 30 ctr -a "$sock" run -d --fifo-dir "$fifo" --rootfs "$rootfs" demo4 /bin/sleep 600
step timeout -k 5 30 ctr -a "$sock" task ls
step timeout -k 5 30 ctr -a "$sock" task exec --fifo-dir "$fifo" --exec-id e1 demo4 /bin/sh -c 'echo "exec sees $(ps | wc -l) lines of ps"'
step timeout -k 5 30 ctr -a "$sock" task kill -s SIGKILL demo4
sleep 0.2
step timeout -k 5 30 ctr -a "$sock" task rm demo4
step timeout -k 5 30 ctr -a "$sock" container rm demo4
echo
echo "agent log: $(wc -l <"$work/agent.log") lines; the demo is done"
