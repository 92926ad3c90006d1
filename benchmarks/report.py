"""Turning results.json into the table (medians, ratios, targets) and the plots."""

from __future__ import annotations

import os
import re

OURS, REF = "taskagent", "containerd"
README = os.path.join(os.path.dirname(__file__), "README.md")
PLOTS = os.path.join(os.path.dirname(__file__), "plots")  # the README's figures
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        v = f"{v:.3f}" if v < 10 else f"{v:.1f}"
    return f"{v}{unit}"


def _ratio(ref, ours, higher_is_better=False):
    if ref is None or ours in (None, 0) or ref == 0:
        return None
    return ours / ref if higher_is_better else ref / ours


def _verdict(ok):
    return "" if ok is None else ("met" if ok else "**missed**")


def rows(data: dict) -> list[list[str]]:
    r = data["results"]
    out = []

    def add(name, ours, ref, unit, ratio, target, ok, agent=None):
        out.append([name, _fmt(ours, unit), _fmt(ref, unit),
                    "-" if ratio is None else f"{ratio:.1f}x", _fmt(agent, " ms"), target, _verdict(ok)])

    if "floor" in r:
        s = r["floor"]["summary"]
        add("transport floor: one Version call, p50", s[OURS]["p50_ms"], s.get(REF, {}).get("p50_ms"),
            " ms", None, "(reference)", None, r["floor"].get("agent_handling_total_mean_ms"))
    if "lifecycle" in r:
        s = r["lifecycle"]["summary"]
        ref = s.get(REF, {})
        ratio = _ratio(ref.get("p50_ms"), s[OURS]["p50_ms"])
        agent = r["lifecycle"].get("agent_handling_total_mean_ms")
        add("lifecycle (6 calls), p50", s[OURS]["p50_ms"], ref.get("p50_ms"), " ms", ratio,
            ">= 15x; agent <= 3 ms", None if ratio is None else (ratio >= 15 and agent <= 3), agent)
        add("lifecycle (6 calls), p99", s[OURS]["p99_ms"], ref.get("p99_ms"), " ms",
            _ratio(ref.get("p99_ms"), s[OURS]["p99_ms"]), "", None)
    if "throughput" in r:
        for n, per in r["throughput"].items():
            ours = per[OURS]["per_second"]
            ref = per.get(REF, {}).get("per_second")
            add(f"lifecycles/s, {n} clients", ours, ref, "/s", _ratio(ref, ours, True),
                ">= 400/s" if n == "8" else "", (ours >= 400) if n == "8" else None)
    if "exit_to_wait" in r:
        s = r["exit_to_wait"]["summary"]
        # The agent's figure: from the recorded exit to Wait's answer, before the transport.
        delivery = r["exit_to_wait"].get("agent_handling_total_mean_ms")
        add("exit -> Wait answer, p50", s[OURS]["p50_ms"], s.get(REF, {}).get("p50_ms"), " ms",
            _ratio(s.get(REF, {}).get("p50_ms"), s[OURS]["p50_ms"]), "agent <= 0.2 ms",
            None if delivery is None else delivery <= 0.2, delivery)
    if "exec" in r:
        s = r["exec"]["summary"]
        ratio = _ratio(s.get(REF, {}).get("p50_ms"), s[OURS]["p50_ms"])
        agent = r["exec"].get("agent_handling_total_mean_ms")
        add("exec /bin/true (4 calls), p50", s[OURS]["p50_ms"], s.get(REF, {}).get("p50_ms"),
            " ms", ratio, ">= 8x; agent <= 1.5 ms",
            None if ratio is None else (ratio >= 8 and agent <= 1.5), agent)
    if "pause_resume" in r:
        s = r["pause_resume"]["summary"]
        ratio = _ratio(s.get(REF, {}).get("p50_ms"), s[OURS]["p50_ms"])
        agent = r["pause_resume"].get("agent_handling_total_mean_ms")
        add("pause + resume, p50", s[OURS]["p50_ms"], s.get(REF, {}).get("p50_ms"), " ms", ratio,
            ">= 10x; agent <= 0.5 ms", None if ratio is None else (ratio >= 10 and agent <= 0.5),
            agent)
    if "density" in r:
        ours_rows = r["density"].get(OURS, [])
        ref_rows = r["density"].get(REF, [])
        ref_per = next((x["per_task_kib"] for x in reversed(ref_rows) if x["tasks"]), None)
        for row in ours_rows:
            n = row["tasks"]
            ref_row = next((x for x in ref_rows if x["tasks"] == n), None)
            add(f"PSS of daemon(s), {n} running tasks", row["pss_kib"] / 1024,
                ref_row["pss_kib"] / 1024 if ref_row else None, " MiB", None,
                "fixed <= 40 MiB" if n == 0 else "", (row["pss_kib"] <= 40 * 1024) if n == 0 else None)
        last = ours_rows[-1] if ours_rows else None
        if last and last["tasks"]:
            per = last["per_task_kib"]
            add(f"PSS per running task ({last['tasks']} tasks; containerd: per shim)", per,
                ref_per, " KiB", _ratio(ref_per, per), "<= 32 KiB", per <= 32)
        for row in ours_rows:
            if not row["metrics"]:
                continue
            n = row["tasks"]
            ref_row = next((x for x in ref_rows if x["tasks"] == n and x["metrics"]), None)
            ref_ms = ref_row["metrics"]["p50_ms"] if ref_row else None
            ours_ms = row["metrics"]["p50_ms"]
            add(f"Metrics of all {n} tasks, p50", ours_ms, ref_ms, " ms", _ratio(ref_ms, ours_ms),
                "<= 30 ms" if n >= 1000 else "", (ours_ms <= 30) if n >= 1000 else None)
        if ref_rows and ref_rows[-1]["metrics"]:
            n = ref_rows[-1]["tasks"]
            add(f"Metrics of all {n} tasks (containerd), p50", None,
                ref_rows[-1]["metrics"]["p50_ms"], " ms", None, "", None)
    if "cold_start" in r:
        c = r["cold_start"]
        ours, ref = c[OURS]["p50_ms"], c.get(REF, {}).get("p50_ms")
        add("cold start to first answered call, p50", ours, ref, " ms", _ratio(ref, ours), "", None)
    if "tar" in r:
        t = r["tar"]["mb_per_s"]
        size = r["tar"]["tree_bytes"] / 1e6
        add(f"tar diff of a {size:.0f} MB tree (ref: GNU tar)", t["diff"], t["gnu_diff"], " MB/s",
            _ratio(t["gnu_diff"], t["diff"], True), ">= GNU tar", t["diff"] >= t["gnu_diff"])
        add(f"tar apply of a {size:.0f} MB tree (ref: GNU tar)", t["apply"], t["gnu_apply"],
            " MB/s", _ratio(t["gnu_apply"], t["apply"], True), ">= GNU tar",
            t["apply"] >= t["gnu_apply"])
    if "restart" in r:
        x = r["restart"]
        secs = x["seconds_to_serving"]
        add(f"agent restart to serving, {x['tasks']} running tasks", secs * 1000, None, " ms",
            None, "<= 1 s" if x["tasks"] >= 1000 else "", (secs <= 1) if x["tasks"] >= 1000 else None)
    if "checkpoint" in r and "skipped" not in r["checkpoint"]:
        c = r["checkpoint"]
        for op in ("checkpoint", "restore"):
            ours = c.get(OURS, {}).get(op, {}).get("p50_ms")
            ref = c.get(REF, {}).get(op, {}).get("p50_ms")
            note = "" if ref is not None else c.get(REF, {}).get("error", "")[:60]
            add(f"{op} of a small container, p50", ours, ref, " ms", _ratio(ref, ours), note, None)
    for extra in data.get("extra_rows", []):
        out.append(extra)
    return out


def table(data: dict) -> str:
    m = data["machine"]
    head = (f"Machine: {m['cores']} cores, Linux {m['kernel']}, cgroups {m['cgroup']}, "
            f"Python {m['python']}, grpcio {m['grpcio']}, {m['containerd']}, "
            f"runc {m['runc'].split()[-1] if m['runc'] else '-'}; {m['date']}"
            + (" (quick run)" if data.get("quick") else ""))
    lines = [head, "", "| scenario | taskagent | containerd + runc | ratio | agent handling |"
             " target | |", "|---|---|---|---|---|---|---|"]
    for row in rows(data):
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


HEADER = """# Benchmarks

Our agent against containerd + runc on the same machine, in the same run, through the same
client calls (`bash scripts/bench.sh`; see `benchmarks/run.py` for what each scenario does).
Ratios are what to quote: the machine is shared and noisy. The agent's own handling time
comes from its Prometheus RPC histograms.
"""


# The plots written for the README: (file name without .png, title).
FIGURES = (("lifecycle", "Full lifecycle latency"), ("exec", "Exec latency"),
           ("pause_resume", "Pause + resume latency"), ("floor", "One gRPC call"),
           ("exit_to_wait", "Exit to Wait answer"), ("throughput", "Throughput"),
           ("density", "Memory as tasks are added"))


def update_readme(text: str, data: dict) -> None:
    try:
        with open(README) as f:
            content = f.read()
    except FileNotFoundError:
        content = HEADER
    figures = "\n".join(f"![{title}](plots/{name}.png)" for name, title in FIGURES
                        if name in data["results"])
    block = f"{BEGIN}\n{text}\n\n{figures}\n{END}"
    if BEGIN in content:
        content = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _m: block, content,
                         flags=re.S)
    else:
        content += "\n" + block + "\n"
    with open(README, "w") as f:
        f.write(content)


def plots(data: dict, out: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots (pip install '.[bench]')")
        return
    r = data["results"]
    for key, title in (("lifecycle", "Full lifecycle latency"), ("exec", "Exec latency"),
                       ("pause_resume", "Pause + resume latency"), ("floor", "One gRPC call"),
                       ("exit_to_wait", "Exit to Wait answer")):
        if key not in r:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        samples = r[key]["samples_s"]
        names = [n for n in (OURS, REF) if n in samples]
        ax.boxplot([[s * 1000 for s in samples[n]] for n in names], tick_labels=names,
                   showfliers=True)
        ax.set_yscale("log")
        ax.set_ylabel("ms (log scale)")
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(os.path.join(out, f"{key}.png"), dpi=100)
        plt.close(fig)
    if "throughput" in r:
        fig, ax = plt.subplots(figsize=(7, 4))
        ns = sorted(r["throughput"], key=int)
        for name in (OURS, REF):
            ys = [r["throughput"][n].get(name, {}).get("per_second") for n in ns]
            if all(y is not None for y in ys):
                ax.plot([int(n) for n in ns], ys, marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("lifecycles per second")
        ax.legend()
        ax.set_title("Throughput")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "throughput.png"), dpi=100)
        plt.close(fig)
    if "density" in r:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name in (OURS, REF):
            points = r["density"].get(name) or []
            if points:
                ax.plot([p["tasks"] for p in points], [p["pss_kib"] / 1024 for p in points],
                        marker="o", label=name + (" (+ shims)" if name == REF else " + supervisor"))
        ax.set_xlabel("running tasks")
        ax.set_ylabel("PSS, MiB")
        ax.legend()
        ax.set_title("Memory as tasks are added")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "density.png"), dpi=100)
        plt.close(fig)
