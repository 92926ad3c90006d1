"""Device filter for cgroup v2: the generated program decides like the reference semantics
(checked by interpreting its instructions), and the kernel enforces it on a real cgroup.

Real-kernel tests make a cgroup under the cgroup2 mount, attach the filter, move a forked child
into it and have the child open and mknod devices; the child reports errno values through a
pipe. Device nodes with an unregistered major open with ENXIO when the filter lets them
through and EPERM when it does not, so every expectation is an exact errno.
"""

from __future__ import annotations

import errno
import json
import os
import random
import select
import signal
import stat
import struct
import time
import uuid

import pytest

from agent.cgroups.resources import DeviceRule, effective_device_rules, parse_devices
from agent.native import _devices, devices
from agent.native.devices import DeviceFilterError

OK = 0
EPERM = errno.EPERM
ENXIO = errno.ENXIO
R, W, RW = os.O_RDONLY, os.O_WRONLY, os.O_RDWR
ACC = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_*
DEV = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_*


def rule(allow: bool, kind: str, major: int | None, minor: int | None, access: str) -> DeviceRule:
    return DeviceRule(allow, kind, major, minor, access)


# ---------------------------------------------------------------------------------------------
# The program, without the kernel: an interpreter for the instructions we emit, checked against
# the semantics written the other way round (per access, the last matching rule decides).


def run_program(prog: bytes, kind: int, major: int, minor: int, access: int) -> int:
    ctx = struct.pack("<III", (access << 16) | kind, major, minor)
    regs = [0] * 11
    pc = 0
    mask64 = (1 << 64) - 1
    n = len(prog) // devices.INSN_SIZE
    for _ in range(100000):
        assert 0 <= pc < n, f"pc {pc} left the program"
        code, r, off, imm = struct.unpack_from("<BBhi", prog, pc * devices.INSN_SIZE)
        dst, src = r & 0xF, r >> 4
        imm64 = imm & mask64  # sign-extended, as the kernel does
        pc += 1
        if code == 0x61:  # ldx w
            assert src == 1 and off in (0, 4, 8)
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code == 0x77:  # rsh64 k
            regs[dst] = regs[dst] >> imm
        elif code == 0x54:  # and32 k
            regs[dst] = (regs[dst] & imm64) & 0xFFFFFFFF
        elif code == 0x57:  # and64 k
            regs[dst] = regs[dst] & imm64
        elif code == 0xB7:  # mov64 k
            regs[dst] = imm64
        elif code == 0x15:  # jeq k
            pc += off if regs[dst] == imm64 else 0
        elif code == 0x45:  # jset k
            pc += off if regs[dst] & imm64 else 0
        elif code == 0x56:  # jne32 k
            pc += off if (regs[dst] & 0xFFFFFFFF) != (imm & 0xFFFFFFFF) else 0
        elif code == 0x05:  # ja
            pc += off
        elif code == 0x95:  # exit
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x} at {pc - 1}")
    raise AssertionError("program did not finish")


def reference(rules: list[DeviceRule], kind: str, major: int, minor: int, access: str) -> bool:
    if not access:
        return False
    for letter in access:
        decided = None
        for r in rules:
            if r.type == "a" or (
                r.type == kind
                and r.major in (None, major)
                and r.minor in (None, minor)
                and letter in r.access
            ):
                decided = r.allow
        if not decided:
            return False
    return True


def random_rules(rng: random.Random) -> list[DeviceRule]:
    out = []
    for _ in range(rng.randrange(0, 9)):
        kind = rng.choice("cccbbba")
        access = "".join(c for c in "rwm" if rng.random() < 0.5) or rng.choice("rwm")
        out.append(
            rule(
                rng.random() < 0.5, kind, rng.choice([None, 1, 2]), rng.choice([None, 3, 4]), access
            )
        )
    return out


def test_program_matches_reference_semantics():
    rng = random.Random(1234)
    accesses = ["m", "r", "w", "rw", "rm", "wm", "rwm"]
    for _ in range(150):
        rules = random_rules(rng)
        prog = devices.program(rules)
        for kind in "cb":
            for major in (1, 2, 3):
                for minor in (3, 4, 5):
                    for access in accesses:
                        bits = sum(ACC[c] for c in access)
                        got = run_program(prog, DEV[kind], major, minor, bits)
                        want = reference(rules, kind, major, minor, access)
                        assert got == int(want), (rules, kind, major, minor, access)


def test_program_denies_unknown_or_empty_access():
    prog = devices.program([rule(True, "a", None, None, "rwm")])
    assert run_program(prog, DEV["c"], 1, 3, ACC["r"]) == 1
    assert run_program(prog, DEV["c"], 1, 3, 0) == 0
    assert run_program(prog, DEV["c"], 1, 3, ACC["r"] | 8) == 0


def test_program_drops_rules_before_the_last_reset():
    tail = [rule(False, "a", None, None, "rwm"), rule(True, "c", 1, 3, "rw")]
    head = [rule(True, "c", 1, 5, "rwm"), rule(False, "b", None, None, "m")]
    assert devices.program(head + tail) == devices.program(tail)
    prog = devices.program(head + tail)
    assert len(prog) % devices.INSN_SIZE == 0
    assert run_program(prog, DEV["c"], 1, 5, ACC["r"]) == 0


def test_full_32_bit_numbers_compare_exactly():
    prog = devices.program([rule(True, "c", 0xFFFFFFFF, 0x80000000, "r")])
    assert run_program(prog, DEV["c"], 0xFFFFFFFF, 0x80000000, ACC["r"]) == 1
    assert run_program(prog, DEV["c"], 0x7FFFFFFF, 0x80000000, ACC["r"]) == 0
    assert run_program(prog, DEV["c"], 0xFFFFFFFF, 0, ACC["r"]) == 0


@pytest.mark.parametrize(
    "bad, words",
    [
        (rule(True, "x", None, None, "r"), "type 'x'"),
        (rule(True, "", None, None, "r"), "type ''"),
        (rule(True, "c", None, None, "rx"), 'access "rx"'),
        (rule(True, "c", None, None, ""), 'access ""'),
        (rule(True, "c", None, None, "ré"), "access 'ré'"),
        (rule(True, "c", -5, None, "r"), "major -5"),
        (rule(True, "c", 1 << 32, None, "r"), f"major {1 << 32}"),
        (rule(True, "c", None, "3", "r"), "minor '3'"),
        (rule(True, "c", True, None, "r"), "major True"),
    ],
)
def test_bad_rules_are_refused(bad, words):
    with pytest.raises(DeviceFilterError) as info:
        devices.program([rule(False, "a", None, None, "rwm"), bad])
    assert info.value.errno == errno.EINVAL
    assert "device rule 1" in str(info.value) and words in str(info.value)


def test_too_many_rules_are_refused():
    rules = [rule(True, "c", 1, m, "rw") for m in range(600)]
    with pytest.raises(DeviceFilterError) as info:
        devices.program(rules)
    assert info.value.errno == errno.E2BIG


# ---------------------------------------------------------------------------------------------
# The kernel.


def _cgroup2_mount() -> str | None:
    if os.path.isfile("/sys/fs/cgroup/unified/cgroup.procs"):
        return "/sys/fs/cgroup/unified"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return left.split()[4]
    return None


CGROUP2 = _cgroup2_mount()
if os.geteuid() != 0:
    KERNEL_SKIP = "needs root: loads BPF programs, makes cgroups and device nodes"
elif CGROUP2 is None:
    KERNEL_SKIP = "no cgroup2 mount (neither /sys/fs/cgroup/unified nor one in mountinfo)"
else:
    KERNEL_SKIP = None
needs_kernel = pytest.mark.skipif(KERNEL_SKIP is not None, reason=KERNEL_SKIP or "")


def _unused_major(section: str) -> int:
    """A major in the local/experimental range 240-254 that no driver registered, so a node
    with it opens with ENXIO unless something refuses it first."""
    used, current = set(), None
    with open("/proc/devices") as f:
        for line in f:
            if line.strip().endswith("devices:"):
                current = line.split()[0].lower()
            elif line.strip() and current == section:
                used.add(int(line.split()[0]))
    for major in range(240, 255):
        if major not in used:
            return major
    pytest.skip(f"no unused {section} major in 240-254")


@pytest.fixture
def cgroup():
    """A fresh cgroup2 directory; removed afterwards (the children are reaped by then)."""
    path = os.path.join(CGROUP2, f"taskagent-test-{uuid.uuid4().hex[:12]}")
    os.mkdir(path)
    try:
        yield path
    finally:
        for _ in range(100):
            try:
                os.rmdir(path)
                break
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise
                time.sleep(0.02)


def attach(cgroup_path: str, rules: list[DeviceRule]) -> None:
    fd = os.open(cgroup_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        devices.attach_filter(fd, rules)
    finally:
        os.close(fd)


def _child_op(op: list) -> int:
    try:
        if op[0] == "open":
            os.close(os.open(op[1], op[2] | os.O_CLOEXEC | os.O_NOCTTY))
        elif op[0] == "mknod":
            kind, major, minor = op[2], op[3], op[4]
            mode = 0o600 | (stat.S_IFCHR if kind == "c" else stat.S_IFBLK)
            os.mknod(op[1], mode, os.makedev(major, minor))
        elif op[0] == "mkfifo":
            os.mkfifo(op[1], 0o600)
        elif op[0] == "openpty":  # /dev/ptmx (c 5:2), then /dev/pts/N (c 136:N)
            for fd in os.openpty():
                os.close(fd)
        else:
            return -1
    except OSError as e:
        return e.errno
    return 0


def run_in_cgroup(cgroup_path: str, ops: list[list]) -> list[int]:
    """Fork a child, move it into the cgroup, run `ops` there; their errno values (0 = ok)."""
    go_r, go_w = os.pipe()
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.close(go_w)
            os.close(res_r)
            if os.read(go_r, 1) == b"g":
                with open("/proc/self/cgroup") as f:
                    where = [ln.split(":", 2)[2].strip() for ln in f if ln.startswith("0::")]
                out = json.dumps({"cgroup": where, "errnos": [_child_op(op) for op in ops]})
                data = out.encode()
                while data:
                    data = data[os.write(res_w, data) :]
                code = 0
        finally:
            os._exit(code)
    reaped = False
    try:
        os.close(go_r)
        os.close(res_w)
        go_r = res_w = -1
        with open(os.path.join(cgroup_path, "cgroup.procs"), "w") as f:
            f.write(str(pid))
        os.write(go_w, b"g")
        chunks = []
        while True:
            # Bounded, so that a child stuck in the kernel fails the test instead of hanging it.
            assert select.select([res_r], [], [], 30)[0], "the child stopped reporting"
            chunk = os.read(res_r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
        reaped = True
        assert os.waitstatus_to_exitcode(status) == 0
        report = json.loads(b"".join(chunks))
        assert report["cgroup"] == ["/" + os.path.relpath(cgroup_path, CGROUP2)]
        return report["errnos"]
    finally:
        if not reaped:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
        for fd in (go_r, go_w, res_r, res_w):
            if fd >= 0:
                os.close(fd)


class Nodes:
    """Device nodes made (outside the cgroup) in a temporary directory."""

    def __init__(self, base):
        self.base = str(base)
        self.char = _unused_major("character")
        self.block = _unused_major("block")

    def node(self, kind: str, major: int, minor: int) -> str:
        path = os.path.join(self.base, f"{kind}-{major}-{minor}")
        if not os.path.exists(path):
            mode = 0o666 | (stat.S_IFCHR if kind == "c" else stat.S_IFBLK)
            os.mknod(path, mode, os.makedev(major, minor))
        return path

    def fresh(self, name: str) -> str:
        return os.path.join(self.base, f"new-{name}")


@pytest.fixture
def nodes(tmp_path):
    return Nodes(tmp_path)


def check(cgroup_path: str, cases: list[tuple[list, int]]) -> None:
    got = run_in_cgroup(cgroup_path, [op for op, _ in cases])
    want = [expected for _, expected in cases]
    named = [
        (op[0], os.path.basename(op[1]) if len(op) > 1 else "", g, w)
        for (op, _), g, w in zip(cases, got, want)
    ]
    assert got == want, [n for n in named if n[2] != n[3]]


@needs_kernel
def test_without_a_filter_nothing_is_refused(cgroup, nodes):
    """The control: the nodes and operations the other tests see refused work here."""
    C, B = nodes.char, nodes.block
    check(
        cgroup,
        [
            (["open", "/dev/full", RW], OK),
            (["open", nodes.node("c", C, 0), R], ENXIO),
            (["open", nodes.node("b", B, 0), R], ENXIO),
            (["mknod", nodes.fresh("c"), "c", C, 1], OK),
            (["mknod", nodes.fresh("b"), "b", B, 1], OK),
            (["openpty"], OK),
        ],
    )


@needs_kernel
def test_containerd_default_rules(cgroup, nodes):
    spec = [{"allow": False, "access": "rwm"}] + [
        {"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
        for ma, mi in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (136, None)]
    ]
    attach(cgroup, effective_device_rules(parse_devices(spec)))
    C, B = nodes.char, nodes.block
    check(
        cgroup,
        [
            (["open", "/dev/null", RW], OK),
            (["open", "/dev/zero", R], OK),
            (["open", "/dev/full", W], OK),
            (["open", "/dev/random", R], OK),
            (["open", "/dev/urandom", RW], OK),
            (["openpty"], OK),  # 5:2 and 136:*
            (["open", nodes.node("c", C, 0), R], EPERM),
            (["open", nodes.node("c", C, 0), W], EPERM),
            (["open", nodes.node("c", 1, 4), R], EPERM),  # /dev/port: not in the list
            (["open", nodes.node("b", B, 0), R], EPERM),
            (["mknod", nodes.fresh("null"), "c", 1, 3], OK),
            (["mknod", nodes.fresh("c"), "c", C, 1], OK),  # c *:* m
            (["mknod", nodes.fresh("b"), "b", B, 1], OK),  # b *:* m
            (["open", nodes.fresh("null"), RW], OK),  # the node just made is /dev/null
            (["open", nodes.fresh("b"), R], EPERM),  # made, but not to be used
        ],
    )


@needs_kernel
def test_later_deny_overrides_earlier_allow(cgroup, nodes):
    attach(
        cgroup,
        [
            rule(False, "a", None, None, "rwm"),
            rule(True, "c", 1, None, "rwm"),
            rule(False, "c", 1, 7, "rwm"),
            rule(False, "c", 1, 5, "w"),
        ],
    )
    check(
        cgroup,
        [
            (["open", "/dev/null", RW], OK),
            (["open", "/dev/urandom", R], OK),
            (["open", "/dev/full", R], EPERM),
            (["open", "/dev/full", W], EPERM),
            (["open", "/dev/zero", R], OK),
            (["open", "/dev/zero", W], EPERM),
            (["open", "/dev/zero", RW], EPERM),  # w is denied, so read+write is too
            (["mknod", nodes.fresh("zero"), "c", 1, 5], OK),
            (["mknod", nodes.fresh("full"), "c", 1, 7], EPERM),
        ],
    )


@needs_kernel
def test_later_allow_overrides_earlier_deny(cgroup, nodes):
    C, B = nodes.char, nodes.block
    attach(
        cgroup,
        [
            rule(False, "a", None, None, "rwm"),
            rule(True, "c", None, None, "rwm"),
            rule(False, "c", 1, None, "rwm"),
            rule(True, "c", 1, 9, "rw"),
            rule(True, "c", 1, 7, "r"),
        ],
    )
    check(
        cgroup,
        [
            (["open", "/dev/null", R], EPERM),
            (["open", "/dev/urandom", RW], OK),
            (["open", "/dev/full", R], OK),
            (["open", "/dev/full", W], EPERM),
            (["openpty"], OK),  # c *:* rwm
            (["open", nodes.node("c", C, 0), R], ENXIO),  # allowed, no driver
            (["open", nodes.node("b", B, 0), R], EPERM),
            (["mknod", nodes.fresh("urandom"), "c", 1, 9], EPERM),  # its allow lacks m
            (["mknod", nodes.fresh("c"), "c", C, 1], OK),
            (["mknod", nodes.fresh("b"), "b", B, 1], EPERM),
        ],
    )


@needs_kernel
def test_a_rule_resets_what_came_before(cgroup, nodes):
    attach(
        cgroup,
        [
            rule(True, "c", 1, 3, "rwm"),
            rule(False, "a", None, None, "rwm"),
            rule(True, "c", 1, 5, "rwm"),
        ],
    )
    check(
        cgroup,
        [
            (["open", "/dev/null", R], EPERM),
            (["open", "/dev/zero", RW], OK),
        ],
    )


@needs_kernel
def test_wildcard_major_and_minor(cgroup, nodes):
    C, B = nodes.char, nodes.block
    attach(
        cgroup,
        [
            rule(False, "a", None, None, "rwm"),
            rule(True, "c", 1, None, "r"),  # any minor of major 1
            rule(True, "c", None, 3, "w"),  # minor 3 of any major
            rule(True, "b", B, None, "r"),
            rule(True, "c", None, None, "m"),
        ],
    )
    check(
        cgroup,
        [
            (["open", "/dev/zero", R], OK),
            (["open", "/dev/full", R], OK),
            (["open", "/dev/zero", W], EPERM),
            (["open", "/dev/null", W], OK),
            (["open", "/dev/null", RW], OK),  # r from 1:*, w from *:3
            (["open", nodes.node("c", C, 3), W], ENXIO),  # *:3 w lets it through
            (["open", nodes.node("c", C, 3), R], EPERM),
            (["open", nodes.node("b", B, 0), R], ENXIO),
            (["open", nodes.node("b", B, 7), R], ENXIO),
            (["open", nodes.node("b", B, 7), W], EPERM),
            (["open", nodes.node("b", B + 1 if B < 254 else B - 1, 0), R], EPERM),
            (["mknod", nodes.fresh("c"), "c", C, 9], OK),
            (["mknod", nodes.fresh("b"), "b", B, 9], EPERM),
        ],
    )


@needs_kernel
def test_mknod_only(cgroup, nodes):
    attach(cgroup, [rule(True, "c", 1, 3, "m")])
    check(
        cgroup,
        [
            (["mknod", nodes.fresh("null"), "c", 1, 3], OK),
            (["open", nodes.fresh("null"), R], EPERM),
            (["open", nodes.fresh("null"), W], EPERM),
            (["open", "/dev/null", RW], EPERM),
            (["mknod", nodes.fresh("zero"), "c", 1, 5], EPERM),
            (["mknod", nodes.fresh("b"), "b", nodes.block, 0], EPERM),
            (["mkfifo", nodes.fresh("fifo")], OK),  # not a device: no rule applies
        ],
    )


@needs_kernel
def test_programs_attached_before_stay(cgroup):
    attach(cgroup, [rule(True, "c", 1, None, "rwm")])
    attach(cgroup, [rule(True, "c", 1, 3, "rwm"), rule(True, "c", 1, 5, "r")])
    check(
        cgroup,
        [
            (["open", "/dev/null", RW], OK),
            (["open", "/dev/zero", R], OK),
            (["open", "/dev/zero", W], EPERM),  # the first allows it, the second does not
            (["open", "/dev/full", R], EPERM),
        ],
    )


@needs_kernel
def test_long_rule_list_passes_the_verifier(cgroup):
    rules = [rule(False, "a", None, None, "rwm")]
    rules += [rule(m % 2 == 0, "c", 1 + m % 7, m, "rwm"[: 1 + m % 3]) for m in range(440)]
    rules += [rule(True, "c", 1, 3, "rw")]
    attach(cgroup, rules)
    check(
        cgroup,
        [
            (["open", "/dev/null", RW], OK),
            (["open", "/dev/zero", R], EPERM),
        ],
    )


@needs_kernel
def test_attach_to_a_directory_that_is_no_cgroup(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(DeviceFilterError) as info:
            devices.attach_filter(fd, [rule(True, "a", None, None, "rwm")])
    finally:
        os.close(fd)
    assert info.value.errno == errno.EBADF
    assert "BPF_PROG_ATTACH" in str(info.value)


@needs_kernel
def test_refused_program_reports_the_verifier():
    exit_only = struct.pack("<BBhi", 0x95, 0, 0, 0)  # returns R0 without setting it
    with pytest.raises(DeviceFilterError) as info:
        _devices.load_check(exit_only)
    assert info.value.errno == errno.EACCES
    assert "BPF_PROG_LOAD" in str(info.value)
    assert str(info.value).endswith("verifier: R0 !read_ok")
    assert "R0 !read_ok" in info.value.verifier_log
