"""The committed agent/api/ tree is exactly what tools/gen_proto.py makes from proto/."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "agent" / "api"
GENERATOR = ROOT / "tools" / "gen_proto.py"
REGENERATE = "python tools/gen_proto.py"


def _files(tree: Path) -> dict[str, bytes]:
    return {
        p.relative_to(tree).as_posix(): p.read_bytes()
        for p in tree.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def _recorded_tools_version() -> str:
    header = (COMMITTED / "__init__.py").read_text()
    match = re.search(r"^# grpcio-tools==(\S+)$", header, re.MULTILINE)
    assert match, f"agent/api/__init__.py records no grpcio-tools version: run {REGENERATE}"
    return match.group(1)


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.skip("grpc_tools is not importable (pip install grpcio-tools)")
    recorded = _recorded_tools_version()
    installed = importlib.metadata.version("grpcio-tools")
    if installed != recorded:
        pytest.fail(
            f"agent/api/ was generated with grpcio-tools {recorded} but {installed} is installed, "
            f"so the comparison would mean nothing: pip install grpcio-tools=={recorded}, or run "
            f"{REGENERATE} and commit the result"
        )

    out = tmp_path / "api"
    run = subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(out)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, f"{REGENERATE} failed:\n{run.stdout}{run.stderr}"

    fresh, committed = _files(out), _files(COMMITTED)
    problems = [f"missing from agent/api: {name}" for name in sorted(fresh.keys() - committed)]
    problems += [f"not generated any more: {name}" for name in sorted(committed.keys() - fresh)]
    problems += [
        f"differs: {name}"
        for name in sorted(fresh.keys() & committed.keys())
        if fresh[name] != committed[name]
    ]
    assert not problems, f"agent/api/ is out of date; run {REGENERATE}\n" + "\n".join(problems)
