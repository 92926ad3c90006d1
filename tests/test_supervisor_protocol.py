"""The agent's copy of the supervisor protocol numbers matches the C header."""

from __future__ import annotations

import os
import re

from agent.runtime.native import protocol as P

HEADER = os.path.join(os.path.dirname(__file__), "..", "_native", "include", "supervisor_proto.h")


def test_numbers_match_the_c_header():
    if not os.path.exists(HEADER):
        import pytest

        pytest.skip("the C sources are not beside the tests")
    text = open(HEADER).read()
    c_names = dict(re.findall(r"^\s+((?:SV|T)_[A-Z0-9_]+)\s*=\s*(\d+),", text, re.M))
    assert c_names, "no constants parsed from the header"
    checked = 0
    for name, value in c_names.items():
        py_name = name[3:] if name.startswith("SV_") else name
        assert getattr(P, py_name) == int(value), name
        checked += 1
    assert checked == len(c_names)
    assert int(re.search(r"#define SV_MAGIC (0x[0-9a-fA-F]+)u", text).group(1), 16) == P.MAGIC
    assert int(re.search(r"#define SV_VERSION (\d+)", text).group(1)) == P.VERSION


def test_payload_encoding():
    p = P.Payload().u64(P.T_PID, 258).str(P.T_KEY, "ns/id")
    assert p.encode() == (bytes([2, 0, 0, 0, 8, 0, 0, 0]) + (258).to_bytes(8, "little")
                          + bytes([5, 0, 0, 0, 5, 0, 0, 0]) + b"ns/id")
    decoded = P.decode(p.encode())
    assert P.u64(decoded[P.T_PID]) == 258 and P.text(decoded[P.T_KEY]) == "ns/id"
