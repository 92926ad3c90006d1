"""Native tar: hostile archives are refused without touching anything outside the target, and
diff -> apply reproduces a tree exactly; GNU tar reads what we write and we read what it writes."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path

import pytest

from agent.native import tar
from agent.native.tar import TarError

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="owners, setuid bits and trusted xattrs")
needs_gnu_tar = pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar not installed")


@pytest.fixture
def work():
    """A temp parent holding the target, a canary sibling and room for a source tree."""
    parent = Path(tempfile.mkdtemp(prefix="tartest-"))
    (parent / "target").mkdir()
    canary = parent / "canary"
    (canary / "sub").mkdir(parents=True)
    (canary / "file").write_bytes(b"canary\n")
    (canary / "sub" / "deep").write_bytes(b"deep\n")
    yield parent
    shutil.rmtree(parent)


# --- helpers -----------------------------------------------------------------------------


def make_tar(entries, fmt=tarfile.PAX_FORMAT) -> bytes:
    """An archive from (kind, name, extra) tuples, written by Python's tarfile."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for kind, name, extra in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_600_000_000
            data = None
            if kind == "file":
                data = extra
                ti.size = len(data)
                ti.mode = 0o644
            elif kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, extra
            elif kind == "link":
                ti.type, ti.linkname = tarfile.LNKTYPE, extra
            elif kind in ("chr", "blk"):
                ti.type = tarfile.CHRTYPE if kind == "chr" else tarfile.BLKTYPE
                ti.devmajor, ti.devminor, ti.mode = 1, 3, 0o666
            elif kind == "fifo":
                ti.type, ti.mode = tarfile.FIFOTYPE, 0o644
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def feed(data: bytes, chunk: int = 65536, nonblocking: bool = False) -> int:
    """A pipe read end that a thread fills with data, in chunks, then closes."""
    r, w = os.pipe()
    if nonblocking:
        os.set_blocking(r, False)

    def writer():
        try:
            for i in range(0, len(data), chunk):
                os.write(w, data[i : i + chunk])
        except BrokenPipeError:
            pass  # apply stopped early on an error: the rest is not needed
        finally:
            os.close(w)

    threading.Thread(target=writer, daemon=True).start()
    return r


def apply_bytes(data: bytes, dest: Path, **kw) -> tar.TarCounts:
    r = feed(data, **kw)
    try:
        return tar.apply(r, dest)
    finally:
        os.close(r)


def diff_bytes(src: Path) -> bytes:
    """diff into a pipe, read by this thread while diff runs in another."""
    r, w = os.pipe()
    result = {}

    def run():
        try:
            result["counts"] = tar.diff(src, w)
        except OSError as exc:  # re-raised below in the test thread
            result["error"] = exc
        finally:
            os.close(w)

    t = threading.Thread(target=run)
    t.start()
    chunks = []
    while chunk := os.read(r, 1 << 20):
        chunks.append(chunk)
    os.close(r)
    t.join()
    if "error" in result:
        raise result["error"]
    data = b"".join(chunks)
    assert result["counts"].bytes == len(data)
    return data


def xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in sorted(names)}


def _open_noatime(path: str, flags: int) -> int:
    try:
        return os.open(path, flags | os.O_NOATIME)
    except PermissionError:  # O_NOATIME needs ownership or CAP_FOWNER
        return os.open(path, flags)


def snapshot(root: Path, skip: Path | None = None, atime: bool = False) -> dict:
    """Every entry under root (except skip): lstat fields, link target, xattrs, content hash.
    Reads use O_NOATIME so that looking does not change the atimes being compared."""
    out = {}

    def visit(p: str, rel: str):
        st = os.lstat(p)
        rec = {
            "mode": st.st_mode,
            "uid": st.st_uid,
            "gid": st.st_gid,
            "nlink": st.st_nlink,
            "mtime": st.st_mtime_ns,
            "xattrs": xattrs(p),
        }
        if atime:
            rec["atime"] = st.st_atime_ns
        if not stat.S_ISDIR(st.st_mode):
            rec["size"] = st.st_size
        if stat.S_ISLNK(st.st_mode):
            rec["link"] = os.readlink(p)
        out[rel] = (rec, (st.st_dev, st.st_ino))
        if stat.S_ISDIR(st.st_mode):
            fd = _open_noatime(p, os.O_RDONLY | os.O_DIRECTORY)
            try:
                names = sorted(os.listdir(fd))
            finally:
                os.close(fd)
            for name in names:
                child = os.path.join(p, name)
                if skip is not None and child == str(skip):
                    continue
                visit(child, f"{rel}/{name}" if rel else name)

    visit(str(root), "")
    for rel, (rec, _) in out.items():
        if stat.S_ISREG(rec["mode"]):
            fd = _open_noatime(os.path.join(root, rel), os.O_RDONLY)
            with os.fdopen(fd, "rb") as f:
                rec["sha"] = hashlib.sha256(f.read()).hexdigest()
    return out


def records(snap: dict) -> dict:
    return {rel: rec for rel, (rec, _) in snap.items() if rel}


def link_groups(snap: dict) -> set[frozenset[str]]:
    """Names grouped by inode: hardlink identity within a tree."""
    groups: dict = {}
    for rel, (rec, ident) in snap.items():
        if rel and not stat.S_ISDIR(rec["mode"]):
            groups.setdefault(ident, set()).add(rel)
    return {frozenset(g) for g in groups.values()}


# --- the hostile corpus ------------------------------------------------------------------


def hostile_corpus(parent: Path) -> list[tuple[str, bytes, int, str]]:
    """(case id, archive, expected errno, a name the message must contain)."""
    canary = parent / "canary"
    abs_canary = str(canary).lstrip("/")
    long_name = "/".join(["n" * 200] * 30)  # 6029 bytes, every component legal
    payload = b"pwned\n"
    cases = [
        ("dotdot", [("file", "../x", payload)], errno.EPERM, "../x"),
        ("dotdot-deep", [("file", "a/../../canary/x", payload)], errno.EPERM, "a/../../canary/x"),
        ("dotdot-dir", [("dir", "../canary/newdir", None)], errno.EPERM, "../canary/newdir"),
        ("absolute-etc", [("file", "/etc/x", payload)], errno.EPERM, "/etc/x"),
        ("absolute-canary", [("file", f"{canary}/x", payload)], errno.EPERM, f"{canary}/x"),
        (
            "symlink-root-then-file",
            [("sym", "s", "/"), ("file", f"s/{abs_canary}/pwned", payload)],
            errno.EPERM,
            f"s/{abs_canary}/pwned",
        ),
        (
            "symlink-abs-dir-then-file",
            [("sym", "s", str(canary)), ("file", "s/file", payload)],
            errno.EPERM,
            "s/file",
        ),
        (
            "symlink-relative-escape",
            [("sym", "s", "../canary"), ("file", "s/pwned", payload)],
            errno.EPERM,
            "s/pwned",
        ),
        (
            "symlink-chain-escape",
            [("sym", "a", "b"), ("sym", "b", "../canary"), ("file", "a/pwned", payload)],
            errno.EPERM,
            "a/pwned",
        ),
        (
            "symlink-then-dir",
            [("sym", "s", str(canary)), ("dir", "s/newdir", None)],
            errno.EPERM,
            "s/newdir",
        ),
        (
            "symlink-then-symlink",
            [("sym", "s", "../canary"), ("sym", "s/evil", "/")],
            errno.EPERM,
            "s/evil",
        ),
        (
            "hardlink-absolute",
            [("link", "h", str(canary / "file")), ("file", "h", payload)],
            errno.EPERM,
            "h",
        ),
        (
            "hardlink-dotdot",
            [("link", "h", "../canary/file")],
            errno.EPERM,
            "../canary/file",
        ),
        (
            "hardlink-through-symlink",
            [("sym", "s", str(canary)), ("link", "h", "s/file")],
            errno.EPERM,
            "s/file",
        ),
        (
            "hardlink-to-symlink",
            [("sym", "s", str(canary / "file")), ("link", "h", "s")],
            errno.EPERM,
            "not a regular file",
        ),
        ("char-device", [("chr", "null", None)], errno.EPERM, "null"),
        ("block-device", [("blk", "disk", None)], errno.EPERM, "disk"),
        ("long-name", [("file", long_name, payload)], errno.ENAMETOOLONG, long_name[:120]),
    ]
    out = [(cid, make_tar(entries), err, needle) for cid, entries, err, needle in cases]
    out.append(
        (
            "gnu-long-name",
            make_tar([("file", long_name, payload)], fmt=tarfile.GNU_FORMAT),
            errno.ENAMETOOLONG,
            "GNU long name",
        )
    )

    # Raw byte damage on a plain ustar archive: one 100 KiB file, then the end blocks.
    good = make_tar([("file", "big", os.urandom(100 * 1024))], fmt=tarfile.USTAR_FORMAT)
    out.append(("truncated-in-header", good[:100], errno.EINVAL, "inside a header"))
    out.append(("truncated-in-data", good[: 512 + 5000], errno.EINVAL, 'entry "big"'))
    out.append(
        ("truncated-no-end", good[: 512 + 100 * 1024], errno.EINVAL, "no end-of-archive blocks")
    )
    flipped = bytearray(good)
    flipped[0] ^= 0x20  # "big" -> "Big": the stored checksum no longer matches
    out.append(("bad-checksum", bytes(flipped), errno.EINVAL, "bad checksum"))
    bad_sum = bytearray(good)
    bad_sum[148:156] = b"0000000\0"
    out.append(("zeroed-checksum", bytes(bad_sum), errno.EINVAL, "bad checksum"))
    return out


CASE_IDS = [c[0] for c in hostile_corpus(Path("/nonexistent"))]


@pytest.mark.parametrize("case", CASE_IDS)
def test_hostile_archive_is_refused_and_nothing_outside_changes(work, case):
    _, archive, want_errno, needle = next(c for c in hostile_corpus(work) if c[0] == case)
    target = work / "target"
    before = snapshot(work, skip=target)
    etc_before = (os.path.lexists("/etc/x"), os.stat("/etc").st_mtime_ns)

    with pytest.raises(TarError) as info:
        apply_bytes(archive, target)

    assert info.value.errno == want_errno, str(info.value)
    assert needle in info.value.strerror
    assert snapshot(work, skip=target) == before
    assert (os.path.lexists("/etc/x"), os.stat("/etc").st_mtime_ns) == etc_before


def test_refusal_messages_name_the_entry_and_the_reason(work):
    cases = {
        "../x": "tar apply: entry \"../x\": '..' component refused",
        "/etc/x": 'tar apply: entry "/etc/x": absolute name refused',
    }
    for name, message in cases.items():
        with pytest.raises(TarError) as info:
            apply_bytes(make_tar([("file", name, b"x")]), work / "target")
        assert info.value.strerror == message
    with pytest.raises(TarError) as info:
        apply_bytes(make_tar([("chr", "dev/null", None)]), work / "target")
    assert info.value.strerror == 'tar apply: entry "dev/null": device node refused'


def test_escape_through_symlink_is_refused_not_clamped(work):
    """RESOLVE_BENEATH semantics: nothing lands in target/etc either."""
    target = work / "target"
    archive = make_tar([("sym", "s", "/"), ("file", "s/etc/x", b"x")])
    with pytest.raises(TarError) as info:
        apply_bytes(archive, target)
    assert info.value.errno == errno.EPERM
    assert "leads outside the target through a symlink" in info.value.strerror
    assert sorted(os.listdir(target)) == ["s"]
    assert os.readlink(target / "s") == "/"


def test_existing_symlink_is_replaced_not_written_through(work):
    target = work / "target"
    os.symlink(work / "canary" / "file", target / "f")
    os.symlink(work / "canary", target / "d")
    archive = make_tar([("file", "f", b"new\n"), ("dir", "d", None), ("file", "d/x", b"x")])
    assert apply_bytes(archive, target).entries == 3
    assert (target / "f").read_bytes() == b"new\n"
    assert not (target / "f").is_symlink()
    assert (target / "d").is_dir() and not (target / "d").is_symlink()
    assert (work / "canary" / "file").read_bytes() == b"canary\n"
    assert sorted(os.listdir(work / "canary")) == ["file", "sub"]


def test_existing_hardlink_to_outside_is_not_written_through(work):
    target = work / "target"
    os.link(work / "canary" / "file", target / "f")
    assert apply_bytes(make_tar([("file", "f", b"new\n")]), target).entries == 1
    assert (target / "f").read_bytes() == b"new\n"
    assert (work / "canary" / "file").read_bytes() == b"canary\n"
    assert os.stat(work / "canary" / "file").st_nlink == 1


def test_symlinks_inside_the_target_are_followed_for_parents(work):
    target = work / "target"
    archive = make_tar(
        [("dir", "real", None), ("sym", "alias", "real"), ("file", "alias/f", b"in\n")]
    )
    apply_bytes(archive, target)
    assert (target / "real" / "f").read_bytes() == b"in\n"


def test_fifos_are_allowed_and_missing_parents_are_created(work):
    target = work / "target"
    apply_bytes(make_tar([("fifo", "p/q/fifo", None), ("file", "x/y/z", b"z")]), target)
    assert stat.S_ISFIFO(os.lstat(target / "p/q/fifo").st_mode)
    assert stat.S_IMODE(os.lstat(target / "p/q/fifo").st_mode) == 0o644
    assert (target / "x/y/z").read_bytes() == b"z"
    assert stat.S_IMODE(os.stat(target / "x/y").st_mode) == 0o755 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_partial_output_stays_in_the_target(work):
    """A failure stops extraction; entries before it remain (the caller owns the target)."""
    target = work / "target"
    archive = make_tar([("file", "ok", b"1"), ("file", "../x", b"2"), ("file", "later", b"3")])
    with pytest.raises(TarError):
        apply_bytes(archive, target)
    assert sorted(os.listdir(target)) == ["ok"]


def test_global_pax_header_and_root_entry(work):
    target = work / "target"
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "global"}
    ) as tf:
        root = tarfile.TarInfo("./")
        root.type, root.mode, root.mtime = tarfile.DIRTYPE, 0o750, 1_500_000_000
        tf.addfile(root)
        f = tarfile.TarInfo("./f")
        f.size, f.mtime = 1, 1_500_000_001
        tf.addfile(f, io.BytesIO(b"f"))
    assert apply_bytes(buf.getvalue(), target).entries == 2
    st = os.stat(target)
    assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o750, 1_500_000_000 * 10**9)
    assert os.stat(target / "f").st_mtime_ns == 1_500_000_001 * 10**9
    assert os.stat(target / "f").st_atime_ns == 1_500_000_001 * 10**9


# --- round trip --------------------------------------------------------------------------

T0 = 1_700_000_000 * 10**9


def build_tree(src: Path) -> None:
    """Every file type, odd modes, owners, nanosecond and pre-1970 times, links, xattrs."""
    src.mkdir()
    (src / "empty").write_bytes(b"")
    (src / "small").write_bytes(b"hello tar\n")
    (src / "big").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    with open(src / "sparse", "wb") as f:
        f.truncate(8 * 1024 * 1024)
        f.seek(5 * 1024 * 1024)
        f.write(b"data in the middle")
    deep = src / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "leaf").write_bytes(b"leaf\n")
    os.link(src / "small", src / "a" / "small-link")
    os.link(src / "small", deep / "small-link2")
    os.link(src / "big", src / "a" / "big-link")
    long_dir = src / ("d" * 90) / ("e" * 90) / ("f" * 90)
    long_dir.mkdir(parents=True)
    (long_dir / ("g" * 120)).write_bytes(b"long\n")  # > 100 and > 255 path bytes
    os.symlink("small", src / "rel-link")
    os.symlink("/etc/passwd", src / "abs-link")
    os.symlink("nowhere/at/all", src / "dangling")
    os.symlink("x" * 150, src / "long-target")
    os.mkfifo(src / "fifo")
    sticky = src / "sticky"
    sticky.mkdir()
    (src / "old").write_bytes(b"before 1970\n")

    os.setxattr(src / "small", "user.greeting", b"hi")
    os.setxattr(src / "small", "user.binary", bytes(range(256)) + b"\n=")
    os.setxattr(src / "a", "user.dir", b"on a dir")
    os.setxattr(src / "big", "user.large", os.urandom(4000))

    if IS_ROOT:
        os.setxattr(src / "abs-link", "trusted.on-symlink", b"t", follow_symlinks=False)
        os.chown(src / "small", 1000, 1001)
        os.chown(src / "big", 3_000_000, 65534)  # above ustar's 2097151: needs pax
        os.chown(src / "a", 123, 456)
        os.lchown(src / "abs-link", 777, 888)
        os.chown(src / "fifo", 5, 6)
    modes = {
        "small": 0o4755,  # setuid, after chown
        "big": 0o2640,
        "empty": 0o000 if IS_ROOT else 0o400,
        "sticky": 0o1777,
        "a": 0o750,
        "fifo": 0o620,
    }
    for name, mode in modes.items():
        os.chmod(src / name, mode)

    # Times last, deepest first, so creating entries does not move them afterwards.
    stamp = T0
    for dirpath, dirnames, filenames in sorted(os.walk(src), key=lambda w: -len(w[0])):
        for name in sorted(filenames) + sorted(dirnames):
            stamp += 1_234_567_891
            p = os.path.join(dirpath, name)
            os.utime(p, ns=(stamp + 500_000_001, stamp), follow_symlinks=False)
    os.utime(src / "old", ns=(-1_500_000_000, -1_500_000_000))
    os.utime(src / "a" / "big-link", ns=(T0, T0))  # shared inode: set once, last
    # readlink moves an old symlink atime to now (relatime), once; do it here so the atimes
    # that the tests compare are stable from now on.
    snapshot(src)


def test_round_trip_reproduces_every_attribute(tmp_path):
    src = tmp_path / "src"
    build_tree(src)
    before = snapshot(src, atime=True)
    data = diff_bytes(src)
    dst = tmp_path / "dst"
    dst.mkdir()
    counts = apply_bytes(data, dst, chunk=7777)
    after = snapshot(dst, atime=True)

    assert counts.bytes == len(data)
    assert counts.entries == len(before) - 1
    assert records(after) == records(before)
    assert link_groups(after) == link_groups(before)
    assert {"small", "a/small-link", "a/b/c/small-link2"} in link_groups(after)
    assert snapshot(src, atime=True) == before  # diff changed nothing, atimes included
    if IS_ROOT:
        assert stat.S_IMODE(os.stat(dst / "small").st_mode) == 0o4755
        assert (os.stat(dst / "big").st_uid, os.stat(dst / "big").st_gid) == (3_000_000, 65534)


def test_diff_is_deterministic_and_the_same_on_a_pipe_and_a_file(tmp_path):
    src = tmp_path / "src"
    build_tree(src)
    piped = diff_bytes(src)
    with open(tmp_path / "out.tar", "wb") as f:
        counts = tar.diff(src, f)
        assert f.tell() == counts.bytes
    assert (tmp_path / "out.tar").read_bytes() == piped
    assert diff_bytes(src) == piped


def test_diff_writes_sorted_pax_with_exact_values(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "b").write_bytes(b"bb")
    (src / "a").mkdir()
    (src / "a" / "z").write_bytes(b"z")
    os.setxattr(src / "b", "user.k", b"v=1\n")
    os.utime(src / "b", ns=(1_600_000_000_000_000_000, 1_612_325_106_123_456_789))
    os.utime(src / "a" / "z", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    os.symlink("t" * 120, src / "c")
    with tarfile.open(fileobj=io.BytesIO(diff_bytes(src))) as tf:
        members = tf.getmembers()

    assert [m.name for m in members] == ["a", "a/z", "b", "c"]  # tarfile drops the '/'
    b = members[2]
    assert b.pax_headers["mtime"] == "1612325106.123456789"
    assert b.pax_headers["atime"] == "1600000000"
    assert b.pax_headers["SCHILY.xattr.user.k"] == "v=1\n"
    assert (b.size, b.mtime, b.mode) == (
        2,
        1612325106.123456789,
        stat.S_IMODE(os.stat(src / "b").st_mode),
    )
    assert "mtime" not in members[1].pax_headers and "atime" not in members[1].pax_headers
    assert members[3].linkname == "t" * 120 and members[3].issym()


def test_diff_refuses_devices_and_skips_sockets(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"f")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "sock"))
    try:
        with tarfile.open(fileobj=io.BytesIO(diff_bytes(src))) as tf:
            names = tf.getnames()
    finally:
        sock.close()
    assert names == ["f"]
    if IS_ROOT:
        os.mknod(src / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        with pytest.raises(TarError) as info:
            diff_bytes(src)
        assert info.value.errno == errno.ENOTSUP
        assert info.value.strerror.startswith("tar diff: null: device node")


def test_apply_from_a_nonblocking_pipe(tmp_path):
    src = tmp_path / "src"
    build_tree(src)
    data = diff_bytes(src)
    dst = tmp_path / "dst"
    dst.mkdir()
    apply_bytes(data, dst, chunk=1000, nonblocking=True)
    assert records(snapshot(dst)) == records(snapshot(src))


# --- GNU tar interoperability ------------------------------------------------------------

GNU_FLAGS = ["--xattrs", "--xattrs-include=*", "--numeric-owner"]


def without(recs: dict, *keys: str) -> dict:
    return {rel: {k: v for k, v in rec.items() if k not in keys} for rel, rec in recs.items()}


@needs_gnu_tar
def test_gnu_tar_lists_and_extracts_what_diff_writes(tmp_path):
    src = tmp_path / "src"
    build_tree(src)
    archive = tmp_path / "ours.tar"
    with open(archive, "wb") as f:
        tar.diff(src, f)

    listing = subprocess.run(
        ["tar", "-tvf", str(archive)], capture_output=True, text=True, check=True
    )
    assert listing.stderr == ""
    names = subprocess.run(
        ["tar", "-tf", str(archive)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    expected = []
    for rel, (rec, _) in sorted(snapshot(src).items()):
        if rel:
            expected.append(rel + "/" if stat.S_ISDIR(rec["mode"]) else rel)
    assert sorted(names) == expected
    assert len(names) == len(expected)

    out = tmp_path / "gnu"
    out.mkdir()
    subprocess.run(["tar", *GNU_FLAGS, "-xpf", str(archive), "-C", str(out)], check=True)
    # GNU tar does not restore atimes; everything else must match.
    assert without(records(snapshot(out)), "atime") == without(records(snapshot(src)), "atime")
    assert link_groups(snapshot(out)) == link_groups(snapshot(src))


@needs_gnu_tar
def test_apply_reads_gnu_tar_posix_archives(tmp_path):
    src = tmp_path / "src"
    build_tree(src)
    before = snapshot(src, atime=True)
    archive = tmp_path / "gnu.tar"
    subprocess.run(
        ["tar", *GNU_FLAGS, "--format=posix", "-cf", str(archive), "-C", str(src), "."],
        check=True,
    )
    dst = tmp_path / "dst"
    dst.mkdir()
    with open(archive, "rb") as f:
        tar.apply(f, dst)
    after = snapshot(dst, atime=True)
    assert records(after) == records(before)
    assert link_groups(after) == link_groups(before)
    root_before, root_after = before[""][0], after[""][0]
    assert (root_after["mode"], root_after["mtime"]) == (root_before["mode"], root_before["mtime"])


@needs_gnu_tar
def test_apply_reads_gnu_format_from_a_tar_process_pipe(tmp_path):
    """GNU's own format (long names as 'L'/'K' entries, whole-second times), streamed."""
    src = tmp_path / "src"
    build_tree(src)
    dst = tmp_path / "dst"
    dst.mkdir()
    proc = subprocess.Popen(
        ["tar", "--numeric-owner", "--format=gnu", "-cf", "-", "-C", str(src), "."],
        stdout=subprocess.PIPE,
    )
    tar.apply(proc.stdout.fileno(), dst)
    proc.stdout.close()
    assert proc.wait() == 0

    def whole_seconds(recs):
        for rec in recs.values():
            rec["mtime"] -= rec["mtime"] % 10**9
            rec.pop("xattrs")
        return recs

    assert whole_seconds(records(snapshot(dst))) == whole_seconds(records(snapshot(src)))
    assert link_groups(snapshot(dst)) == link_groups(snapshot(src))


def pax_records(block: bytes) -> list[bytes]:
    out, data = [], block.rstrip(b"\0")
    while data:
        n = int(data.split(b" ", 1)[0])
        out.append(data[:n])
        data = data[n:]
    return out


@needs_root
def test_diff_writes_large_ids_in_pax_and_base_256(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"")
    os.chown(src / "f", 3_000_000, 2_097_151)  # one above the octal limit, one at it
    os.utime(src / "f", ns=(5 * 10**9, 5 * 10**9))
    data = diff_bytes(src)
    assert pax_records(data[512:1024]) == [b"15 uid=3000000\n"]
    header = data[1024:1536]
    assert header[108:116] == b"\x80\0\0\0\0" + (3_000_000).to_bytes(3, "big")
    assert header[116:124] == b"7777777\0"
    assert header[136:148] == b"00000000005\0"


@pytest.mark.skipif(
    os.environ.get("TASKAGENT_SLOW_TESTS") != "1",
    reason="reads 8 GiB of holes (~10 s); set TASKAGENT_SLOW_TESTS=1",
)
def test_diff_writes_sizes_above_8_gib_in_pax(tmp_path):
    """A sparse 8 GiB + 1 file: pax 'size' record, base-256 in the ustar field."""
    src = tmp_path / "src"
    src.mkdir()
    size = 8 * 1024**3 + 1
    with open(src / "huge", "wb") as f:
        f.truncate(size)
    r, w = os.pipe()
    result = {}

    def run():
        try:
            result["c"] = tar.diff(src, w)
        finally:
            os.close(w)

    t = threading.Thread(target=run)
    t.start()
    head = b""
    while len(head) < 3 * 512:
        head += os.read(r, 3 * 512 - len(head))
    while os.read(r, 1 << 20):  # the zeros of the file, then the end blocks
        pass
    t.join()
    os.close(r)
    assert result["c"].bytes == 3 * 512 + size + 511 + 2 * 512
    assert b"19 size=8589934593\n" in pax_records(head[512:1024])
    field = head[1024 + 124 : 1024 + 136]
    assert field[0] == 0x80 and int.from_bytes(field[1:], "big") == size


def test_dir_and_stream_fds_are_accepted(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"by fd")
    dst = tmp_path / "dst"
    dst.mkdir()
    sfd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    dfd = os.open(dst, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with tempfile.TemporaryFile() as f:
            tar.diff(sfd, f.fileno())
            f.seek(0)
            assert tar.apply(f.fileno(), dfd).entries == 1
    finally:
        os.close(sfd)
        os.close(dfd)
    assert (dst / "f").read_bytes() == b"by fd"


def test_diff_skips_the_archive_when_it_is_inside_the_tree(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"f")
    with open(src / "self.tar", "wb") as f:
        tar.diff(src, f)
    with tarfile.open(src / "self.tar") as tf:
        assert tf.getnames() == ["f"]


@needs_root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_mount_point_inside_the_target_is_not_crossed(work):
    """A bind mount of the canary inside the target, in a private mount namespace."""
    target, canary = work / "target", work / "canary"
    (target / "m").mkdir()
    archive = work / "a.tar"
    archive.write_bytes(make_tar([("file", "m/pwned", b"x")]))
    script = (
        "import errno, sys\n"
        "from agent.native import tar\n"
        "try:\n"
        f"    tar.apply(open({str(archive)!r}, 'rb'), {str(target)!r})\n"
        "except tar.TarError as e:\n"
        "    print(e.errno == errno.EPERM and 'mount point' in e.strerror)\n"
    )
    before = snapshot(work, skip=target)
    proc = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            f'mount --bind "{canary}" "{target}/m" && exec "$0" -c "$1"',
            sys.executable,
            script,
        ],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        cwd=work,  # `python -c` looks in its directory first: not in a source tree
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"
    assert snapshot(work, skip=target) == before


def test_refused_entries_create_nothing_not_even_parents(work):
    target = work / "target"
    odd = io.BytesIO()
    with tarfile.open(fileobj=odd, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("x/y/volume")
        ti.type = b"V"  # a GNU volume label: not something we extract
        tf.addfile(ti)
    cases = [
        (make_tar([("link", "x/y/h", "/etc/passwd")]), errno.EPERM),
        (make_tar([("chr", "x/y/null", None)]), errno.EPERM),
        (make_tar([("sym", "x/y/s", "t" * 5000)]), errno.ENAMETOOLONG),
        (odd.getvalue(), errno.ENOTSUP),
    ]
    for archive, want in cases:
        with pytest.raises(TarError) as info:
            apply_bytes(archive, target)
        assert info.value.errno == want
        assert 'entry "x/y/' in info.value.strerror
        assert os.listdir(target) == []
