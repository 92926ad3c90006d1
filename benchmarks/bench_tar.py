"""Native tar against GNU tar on the same tree, in the same run.

Builds a ~200 MB tree (a few large files, a few hundred medium ones, thousands of small ones in
nested dirs, plus links and xattrs), then times, alternately and with the page cache warm:

  diff   our tar.diff into a file       vs  GNU tar -cf FILE (pax, xattrs, numeric owners)
  apply  our tar.apply of that archive  vs  GNU tar -xpf of the same archive

and prints MB/s of tree data for each, and ours/GNU. Medians of --runs runs.

    python benchmarks/bench_tar.py                # ~200 MB, 7 runs, in the system temp dir
    python benchmarks/bench_tar.py --quick        # ~40 MB, 3 runs
    python benchmarks/bench_tar.py --json out.json --dir /dev/shm

On ext4 without a journal, creating inodes soon after many were deleted (seconds, or minutes
while their inode table blocks are dirty) is slow for GNU tar and us alike: the allocator skips
recently deleted inodes one by one. So the outputs are kept until the end, and apply figures on
such a disk only mean something when nothing big was deleted just before. --dir /dev/shm
(tmpfs) times the tar work alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.native import tar

GNU_COMMON = ["--xattrs", "--xattrs-include=*", "--numeric-owner"]
MB = 1_000_000


def build_tree(root: Path, total: int) -> int:
    """Half the bytes in 4 large files, a quarter in 512 KiB files, a quarter in ~8 KiB files
    spread over nested dirs. Returns the bytes of file data."""
    rnd = os.urandom(8 << 20)  # reused slices: cheap to make, still incompressible

    def write(path: Path, size: int, seed: int) -> None:
        with open(path, "wb") as f:
            off = (seed * 7919) % len(rnd)
            left = size
            while left:
                chunk = rnd[off : off + left]
                f.write(chunk)
                left -= len(chunk)
                off = 0

    root.mkdir()
    written = 0
    large = total // 2 // 4
    for i in range(4):
        write(root / f"large-{i}.bin", large, i)
        written += large
    medium, n_medium = 512 * 1024, (total // 4) // (512 * 1024)
    small_total, n_small = total // 4, 0
    for i in range(n_medium):
        d = root / f"m{i % 16:02d}"
        d.mkdir(exist_ok=True)
        write(d / f"file-{i}.dat", medium, i)
        written += medium
    i = 0
    while small_total > 0:
        size = 1024 + (i * 4099) % (15 * 1024)  # 1 to 16 KiB
        d = root / f"s{i % 20:02d}" / f"t{(i // 20) % 10}"
        d.mkdir(parents=True, exist_ok=True)
        write(d / f"small-{i}.txt", size, i)
        small_total -= size
        written += size
        n_small += 1
        i += 1
    os.symlink("large-0.bin", root / "link-to-large")
    os.link(root / "large-1.bin", root / "hardlink-to-large")
    os.setxattr(root / "large-2.bin", "user.bench", b"x" * 64)
    return written


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~40 MB tree and 3 runs")
    ap.add_argument("--runs", type=int, help="runs per measurement (median is reported)")
    ap.add_argument("--size-mb", type=int, help="tree size in MB (default 200, 40 with --quick)")
    ap.add_argument("--dir", help="where to build the tree and extract (default: system temp)")
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args()
    size = (args.size_mb or (40 if args.quick else 200)) * MB
    runs = args.runs or (3 if args.quick else 7)
    gnu = shutil.which("tar")
    if gnu is None:
        print("GNU tar is not installed", file=sys.stderr)
        return 1

    work = Path(tempfile.mkdtemp(prefix="bench-tar-", dir=args.dir))
    try:
        src = work / "src"
        data_bytes = build_tree(src, size)
        ours_tar, gnu_tar = work / "ours.tar", work / "gnu.tar"

        def our_diff():
            with open(ours_tar, "wb") as f:
                tar.diff(src, f)

        def gnu_diff():
            subprocess.run(
                [gnu, *GNU_COMMON, "--format=posix", "-cf", str(gnu_tar), "-C", str(src), "."],
                check=True,
            )

        def our_apply(out: Path):
            with open(ours_tar, "rb") as f:
                tar.apply(f, out)

        def gnu_apply(out: Path):
            subprocess.run([gnu, *GNU_COMMON, "-xpf", str(ours_tar), "-C", str(out)], check=True)

        # Warm the page cache with one untimed pass of each.
        our_diff()
        gnu_diff()
        times: dict[str, list[float]] = {k: [] for k in ("diff", "gnu_diff", "apply", "gnu_apply")}
        for run in range(runs):
            # Alternate who goes first, so neither always runs right after the other's writes.
            order = [("diff", our_diff), ("gnu_diff", gnu_diff)]
            for name, fn in order if run % 2 == 0 else order[::-1]:
                (ours_tar if name == "diff" else gnu_tar).unlink(missing_ok=True)
                os.sync()  # no writeback of the previous step competes with this one
                times[name].append(timed(fn))
            # Every run extracts into a new dir and nothing is deleted until the end: on ext4,
            # creating inodes right after deleting many makes the allocator scan for recently
            # deleted ones, which would time ext4 rather than tar.
            order = [("apply", our_apply), ("gnu_apply", gnu_apply)]
            for name, fn in order if run % 2 == 0 else order[::-1]:
                out = work / f"out-{name}-{run}"
                out.mkdir()
                os.sync()
                times[name].append(timed(lambda fn=fn, out=out: fn(out)))

        med = {k: statistics.median(v) for k, v in times.items()}
        mbps = {k: data_bytes / MB / v for k, v in med.items()}
        result = {
            "tree_bytes": data_bytes,
            "files": sum(len(f) for _, _, f in os.walk(src)),
            "archive_bytes": {"ours": ours_tar.stat().st_size, "gnu": gnu_tar.stat().st_size},
            "runs": runs,
            "median_seconds": med,
            "all_seconds": times,
            "mb_per_s": mbps,
            "ratio_ours_to_gnu": {
                "diff": mbps["diff"] / mbps["gnu_diff"],
                "apply": mbps["apply"] / mbps["gnu_apply"],
            },
            "gnu_tar": subprocess.run(
                [gnu, "--version"], check=True, capture_output=True, text=True
            ).stdout.splitlines()[0],
            "kernel": platform.release(),
            "filesystem_dir": str(work.parent),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"tree: {result['tree_bytes'] / MB:.0f} MB in {result['files']} files; archives: "
        f"ours {result['archive_bytes']['ours'] / MB:.1f} MB, "
        f"GNU {result['archive_bytes']['gnu'] / MB:.1f} MB; median of {runs} runs"
    )
    print(f"{'':8}{'ours MB/s':>12}{'GNU tar MB/s':>14}{'ours/GNU':>10}")
    for op in ("diff", "apply"):
        print(
            f"{op:8}{mbps[op]:12.0f}{mbps['gnu_' + op]:14.0f}"
            f"{result['ratio_ours_to_gnu'][op]:10.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
