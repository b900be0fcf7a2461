"""The emulator's per-browser file system (`SandboxFS` on the host, `MemoryFS` in memory):
nothing outside the sandbox is ever reached, every operation round-trips, answers are the
spec's shapes, errors are the API's, and the watcher reports real events. No HTTP here."""

from __future__ import annotations

import io
import os
import shutil
import stat
import threading
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel_async.testing._processes import LocalProcesses
from kernel_async.testing._sandbox import (
    Event,
    FileSystem,
    MemoryFS,
    SandboxError,
    SandboxFS,
    _diff,
    api_parts,
    parse_mode,
    resolve,
    zip_entry_parts,
)
from tests.spec_shapes import conforms

pytestmark = pytest.mark.anyio

SECRET = b"HOST SECRET"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the sandbox root standing for the host: it must stay untouched."""
    host = tmp_path / "outside"
    host.mkdir()
    (host / "secret").write_bytes(SECRET)
    (host / "only-outside").write_bytes(SECRET)
    return host


@pytest.fixture
async def sandbox(tmp_path: Path, outside: Path) -> AsyncIterator[SandboxFS]:
    fs = SandboxFS(tmp_path / "root")
    yield fs
    await fs.aclose()


@pytest.fixture(params=["sandbox", "memory"])
async def fs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FileSystem]:
    """Both file systems: every shared rule is held by both."""
    filesystem: FileSystem = (
        SandboxFS(tmp_path / "root") if request.param == "sandbox" else MemoryFS()
    )
    yield filesystem
    await filesystem.aclose()


def host_tree(path: Path) -> dict[str, bytes | None]:
    """Every entry under `path` (links not followed) with a file's bytes."""
    tree: dict[str, bytes | None] = {}
    for here, dirs, files in os.walk(path):
        for name in dirs + files:
            full = Path(here, name)
            tree[str(full.relative_to(path))] = full.read_bytes() if full.is_file() else None
    return tree


def refused(status: int, call: Callable[..., Any], *args: Any, **kwargs: Any) -> SandboxError:
    """`call` raises the API error `status`; its body is the API's, naming no host path."""
    with pytest.raises(SandboxError) as info:
        call(*args, **kwargs)
    error = info.value
    assert error.status == status, (error.status, error.message)
    conforms("ErrorModel", error.body())
    assert "pytest-of-" not in error.message  # never a host path under tmp_path
    return error


def assert_no_host_path(error: SandboxError, root: str) -> None:
    assert root not in error.message
    assert str(Path(root).parent) not in error.message


# -- pure rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("", 400),
        ("tmp/x", 400),
        ("./x", 400),
        ("/a\x00b", 400),
        ("/\ud800", 400),
        ("/..", 403),
        ("/../etc/passwd", 403),
        ("/a/../../b", 403),
        ("/a/./../../../x", 403),
    ],
)
def test_api_paths_refused(path: str, status: int) -> None:
    refused(status, api_parts, path)


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("/", ()),
        ("//tmp///x/", ("tmp", "x")),
        ("/a/../b", ("b",)),
        ("/a/./b/..", ("a",)),
        ("/tmp/downloads/report.pdf", ("tmp", "downloads", "report.pdf")),
        ("/…/ünï", ("…", "ünï")),
        ("/...", ("...",)),
    ],
)
def test_api_paths_normalised(path: str, parts: tuple[str, ...]) -> None:
    assert api_parts(path) == parts
    assert resolve("/sandbox", path) == os.path.join("/sandbox", *parts)


_PIECES = st.sampled_from(["/", "..", ".", "\x00", "a", "é", "\ud800", "\udcff", " ", "//", "../"])


@given(st.one_of(st.text(), st.lists(_PIECES, max_size=12).map("".join)))
def test_resolve_refuses_or_stays_inside_the_root(path: str) -> None:
    root = "/srv/sandbox"
    try:
        host = resolve(root, path)
    except SandboxError as exc:
        assert exc.status in (400, 403)  # noqa: PT017
        return
    assert host == root or host.startswith(root + "/")
    assert os.path.normpath(host) == host  # no '..', '.', or empty component left
    assert "\x00" not in host


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_PIECES, min_size=1, max_size=8).map("".join))
def test_writes_anywhere_land_inside_the_root(tmp_path: Path, path: str) -> None:
    base = tmp_path / uuid.uuid4().hex
    root, canary = base / "root", base / "canary"
    canary.mkdir(parents=True)
    (canary / "f").write_bytes(SECRET)
    fs = SandboxFS(root)
    try:
        calls: tuple[Callable[[], None], ...] = (
            lambda: fs.write_file("/" + path, b"x"),
            lambda: fs.write_file(path, b"x"),
            lambda: fs.create_directory(path + "/d"),
        )
        for call in calls:
            try:
                call()
            except SandboxError as exc:
                assert exc.status in (400, 403, 404, 409)  # noqa: PT017
    finally:
        anyio.run(fs.aclose)
    for entry in host_tree(base):
        assert entry in ("canary", "canary/f", "root") or entry.startswith("root/"), entry
    assert (canary / "f").read_bytes() == SECRET


def test_zip_entries_refused_when_they_leave_the_destination() -> None:
    assert zip_entry_parts("a/../b/./c") == ("b", "c")
    for name in ("../x", "../../x", "a/../../x", "/etc/passwd"):
        refused(403, zip_entry_parts, name)


def test_modes_are_octal_strings() -> None:
    assert parse_mode("644", 0) == 0o644
    assert parse_mode("0755", 0) == 0o755
    assert parse_mode(None, 0o600) == 0o600
    for bad in ("", "9", "rwx", "-1", "777777", "77777", "0x1"):
        refused(400, parse_mode, bad, 0)


def test_diff_of_two_snapshots() -> None:
    before: dict[tuple[str, ...], tuple[bool, int, int, int]]
    before = {("a",): (False, 1, 10, 1), ("d",): (True, 2, 10, 0), ("gone",): (False, 3, 1, 1)}
    after: dict[tuple[str, ...], tuple[bool, int, int, int]]
    after = {("a",): (False, 1, 20, 2), ("d",): (True, 2, 99, 0), ("moved",): (False, 3, 1, 1)}
    after[("new",)] = (False, 4, 1, 1)
    assert [(e["type"], e["path"]) for e in _diff(("w",), before, after)] == [
        ("RENAME", "/w/gone"),
        ("WRITE", "/w/a"),
        ("CREATE", "/w/moved"),
        ("CREATE", "/w/new"),
    ]


# -- escapes refused (the host sandbox) ------------------------------------------------


async def test_host_files_are_not_found_inside_the_sandbox(sandbox: SandboxFS) -> None:
    for path in ("/etc/passwd", "/proc/self/environ", "/etc", "/proc/self"):
        error = refused(404, sandbox.read_file, path)
        assert_no_host_path(error, sandbox.root)
        refused(404, sandbox.file_info, path)
        refused(404, sandbox.list_files, path)
        refused(404, sandbox.download_dir_zip, path)
        refused(404, sandbox.delete_file, path)
        refused(404, sandbox.set_file_permissions, path, "777")


async def test_climbing_above_the_root_is_refused(sandbox: SandboxFS, outside: Path) -> None:
    before = host_tree(outside.parent)
    up = "/../outside/secret"
    for call in (
        lambda: sandbox.read_file(up),
        lambda: sandbox.write_file(up, b"pwned"),
        lambda: sandbox.write_file("/a/../../outside/new", b"pwned"),
        lambda: sandbox.file_info(up),
        lambda: sandbox.list_files("/../outside"),
        lambda: sandbox.delete_file(up),
        lambda: sandbox.delete_directory("/../outside"),
        lambda: sandbox.create_directory("/../outside/d"),
        lambda: sandbox.move(up, "/stolen"),
        lambda: sandbox.move("/x", "/../outside/x"),
        lambda: sandbox.set_file_permissions(up, "777"),
        lambda: sandbox.upload([("/ok", b"1"), ("/../outside/new", b"pwned")]),
        lambda: sandbox.download_dir_zip("/.."),
        lambda: sandbox.host_dir("/.."),
    ):
        assert_no_host_path(refused(403, call), sandbox.root)
    assert host_tree(outside.parent) == before  # nothing written, not even "/ok"


@pytest.mark.parametrize("kind", ["absolute", "relative", "etc", "chain"])
async def test_links_out_of_the_sandbox_are_refused(
    sandbox: SandboxFS, outside: Path, kind: str
) -> None:
    root = Path(sandbox.root)
    target = {
        "absolute": str(outside),
        "relative": "../outside",
        "etc": "/etc",
        "chain": "hop",
    }[kind]
    if kind == "chain":  # a link to a link inside, which then climbs out
        (root / "hop").symlink_to("inner/../../outside")
        (root / "inner").mkdir()
    (root / "out").symlink_to(target)
    (root / "file-out").symlink_to(str(outside / "secret") if kind != "etc" else "/etc/passwd")
    before = host_tree(outside)
    name = "secret" if kind != "etc" else "passwd"
    for call in (
        lambda: sandbox.read_file(f"/out/{name}"),
        lambda: sandbox.read_file("/file-out"),
        lambda: sandbox.list_files("/out"),
        lambda: sandbox.file_info(f"/out/{name}"),
        lambda: sandbox.file_info("/file-out"),
        lambda: sandbox.write_file("/out/new", b"pwned"),
        lambda: sandbox.write_file("/file-out", b"pwned"),
        lambda: sandbox.write_file(f"/out/{name}", b"pwned"),
        lambda: sandbox.create_directory("/out/d"),
        lambda: sandbox.delete_file(f"/out/{name}"),
        lambda: sandbox.delete_directory("/out/sub"),
        lambda: sandbox.set_file_permissions(f"/out/{name}", "777"),
        lambda: sandbox.set_file_permissions("/file-out", "777"),
        lambda: sandbox.move(f"/out/{name}", "/stolen"),
        lambda: sandbox.upload_zip("/out", _zip({"x": b"pwned"})),
        lambda: sandbox.download_dir_zip("/out"),
        lambda: sandbox.host_dir("/out"),
    ):
        assert_no_host_path(refused(403, call), sandbox.root)
    assert host_tree(outside) == before
    assert stat.S_IMODE((outside / "secret").stat().st_mode) != 0o777
    # The links themselves are ordinary entries of the sandbox: listed, moved, deleted.
    listed = {e["name"]: e for e in sandbox.list_files("/")}
    assert listed["out"]["mode"].startswith("l")
    assert listed["out"]["is_dir"] is False
    sandbox.move("/out", "/moved-link")
    sandbox.delete_file("/moved-link")
    sandbox.delete_file("/file-out")
    assert host_tree(outside) == before


async def test_links_inside_the_sandbox_are_followed(sandbox: SandboxFS) -> None:
    root = Path(sandbox.root)
    sandbox.write_file("/data/deep/f.txt", b"inside")
    (root / "alias").symlink_to("data/deep")
    (root / "data" / "up").symlink_to("..")
    (root / "file-alias").symlink_to("data/deep/f.txt")
    assert sandbox.read_file("/alias/f.txt") == b"inside"
    assert sandbox.read_file("/data/up/data/deep/f.txt") == b"inside"
    assert sandbox.read_file("/file-alias") == b"inside"
    assert [e["name"] for e in sandbox.list_files("/alias")] == ["f.txt"]
    assert sandbox.file_info("/file-alias")["size_bytes"] == 6
    sandbox.write_file("/alias/g.txt", b"through")
    assert (root / "data" / "deep" / "g.txt").read_bytes() == b"through"
    assert sandbox.host_dir("/alias") == str(root / "data" / "deep")


async def test_link_loops_are_bad_requests(sandbox: SandboxFS) -> None:
    root = Path(sandbox.root)
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    refused(400, sandbox.read_file, "/a")
    refused(400, sandbox.list_files, "/a/x")


async def test_recursive_operations_never_follow_links(sandbox: SandboxFS, outside: Path) -> None:
    root = Path(sandbox.root)
    sandbox.write_file("/tree/keep.txt", b"mine")
    (root / "tree" / "host").symlink_to(str(outside))
    (root / "tree" / "rel").symlink_to("../../outside")
    before = host_tree(outside)
    names = zipfile.ZipFile(io.BytesIO(sandbox.download_dir_zip("/tree"))).namelist()
    assert names == ["keep.txt"]
    sandbox.delete_directory("/tree")
    refused(404, sandbox.file_info, "/tree")
    assert host_tree(outside) == before


async def test_a_link_made_by_a_process_is_refused(sandbox: SandboxFS, outside: Path) -> None:
    processes = LocalProcesses(sandbox)
    try:
        script = f"ln -s /etc etc && ln -s ../.. up && ln -s {outside} host && mkdir tmp"
        spawned = await processes.spawn("sh", args=["-c", script])
        events = [e.data async for e in processes.stdout_stream(spawned["process_id"])]
        assert events[-1] == {"event": "exit", "exit_code": 0}
    finally:
        await processes.aclose()
    for path in ("/etc/passwd", "/up/etc/passwd", "/host/secret"):
        refused(403, sandbox.read_file, path)
        refused(403, sandbox.file_info, path)
        refused(403, sandbox.write_file, path, b"pwned")
    refused(403, sandbox.list_files, "/etc")
    refused(403, sandbox.download_dir_zip, "/up")
    assert (outside / "secret").read_bytes() == SECRET


async def test_a_fifo_is_refused_without_hanging(sandbox: SandboxFS) -> None:
    os.mkfifo(Path(sandbox.root) / "pipe")
    refused(400, sandbox.read_file, "/pipe")
    refused(400, sandbox.write_file, "/pipe", b"x")


def test_swapping_a_directory_for_a_link_never_escapes(tmp_path: Path, outside: Path) -> None:
    """A directory (and a file) swapped for links out, in a loop, while other threads read,
    list and write through them: never the host's bytes, never a write outside."""
    root = tmp_path / "root"
    fs = SandboxFS(root)
    fs.write_file("/d/secret", b"inside")
    (root / "d" / "mine").write_bytes(b"inside")
    (root / "dir-link").symlink_to(str(outside))
    (root / "d" / "file-link").symlink_to(str(outside / "secret"))
    before = host_tree(outside)
    done = threading.Event()
    seen: list[bytes] = []
    listed: set[str] = set()
    statuses: set[int] = set()

    def put(src: str, dst: str) -> None:
        for _ in range(100):
            try:
                os.rename(root / src, root / dst)
                return
            except OSError:  # a write made the missing parent again meanwhile: clear it away
                shutil.rmtree(root / dst, ignore_errors=True)
        raise AssertionError(f"could not rename {src} to {dst}")

    def swap() -> None:
        try:
            for _ in range(1500):
                # The file, then the directory, each swapped for a link out and back.
                put("d/secret", "d/parked")
                put("d/file-link", "d/secret")
                put("d/secret", "d/file-link")
                put("d/parked", "d/secret")
                put("d", "parked-dir")
                put("dir-link", "d")
                put("d", "dir-link")
                put("parked-dir", "d")
        finally:
            done.set()

    def use() -> None:
        while not done.is_set():
            calls: tuple[Callable[[], None], ...] = (
                lambda: seen.append(fs.read_file("/d/secret")),
                lambda: listed.update(e["name"] for e in fs.list_files("/d")),
                lambda: fs.write_file("/d/written", b"pwned"),
                lambda: fs.set_file_permissions("/d/secret", "600"),
            )
            for call in calls:
                try:
                    call()
                except SandboxError as exc:
                    statuses.add(exc.status)

    threads = [threading.Thread(target=swap), threading.Thread(target=use)]
    threads.append(threading.Thread(target=use))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    anyio.run(fs.aclose)
    assert not any(t.is_alive() for t in threads)
    assert SECRET not in seen
    assert b"inside" in seen  # the loop really ran through the sandbox's own file
    assert "only-outside" not in listed
    assert statuses <= {403, 404, 400}
    assert host_tree(outside) == before
    assert stat.S_IMODE((outside / "secret").stat().st_mode) != 0o600


# -- round trips (both file systems) ---------------------------------------------------


async def test_write_then_read(fs: FileSystem) -> None:
    fs.write_file("/tmp/downloads/report.pdf", b"%PDF-1.7")
    assert fs.read_file("/tmp/downloads/report.pdf") == b"%PDF-1.7"
    assert fs.read_file("//tmp/./downloads/../downloads/report.pdf") == b"%PDF-1.7"
    fs.write_file("/tmp/chunks", iter([b"a", b"bc", b"", b"d"]), "600")
    assert fs.read_file("/tmp/chunks") == b"abcd"
    assert fs.file_info("/tmp/chunks")["mode"] == "-rw-------"
    assert fs.file_info("/tmp/downloads/report.pdf")["mode"] == "-rw-r--r--"  # 644, exactly
    fs.write_file("/tmp/chunks", b"new")  # overwrite keeps the mode
    assert (fs.read_file("/tmp/chunks"), fs.file_info("/tmp/chunks")["mode"]) == (
        b"new",
        "-rw-------",
    )
    writer = fs.open_write("/tmp/streamed", "640")
    for part in (b"one ", b"two"):
        writer.write(part)
    writer.close()
    assert fs.read_file("/tmp/streamed") == b"one two"
    refused(400, fs.read_file, "/tmp")
    refused(400, fs.write_file, "/tmp", b"x")
    refused(400, fs.write_file, "/", b"x")
    refused(400, fs.read_file, "/tmp/streamed/below")
    refused(400, fs.write_file, "/tmp/streamed/below", b"x")
    refused(404, fs.read_file, "/tmp/none")
    refused(400, fs.write_file, "/tmp/x", b"x", "rw")


async def test_two_sandboxes_never_share(tmp_path: Path) -> None:
    one, two = SandboxFS(tmp_path / "b1"), SandboxFS(tmp_path / "b2")
    one.write_file("/tmp/x", b"one")
    refused(404, two.read_file, "/tmp/x")
    await one.aclose()
    await two.aclose(remove=True)
    assert not (tmp_path / "b2").exists()
    assert (tmp_path / "b1" / "tmp" / "x").read_bytes() == b"one"


async def test_upload_many_files(fs: FileSystem) -> None:
    fs.upload([("/up/a.txt", b"a"), ("/up/deep/b.bin", iter([b"b", b"b"])), ("/c", b"")])
    assert [fs.read_file(p) for p in ("/up/a.txt", "/up/deep/b.bin", "/c")] == [b"a", b"bb", b""]
    refused(400, fs.upload, [("/ok", b"1"), ("relative", b"2")])
    refused(404, fs.read_file, "/ok")  # checked whole before any write


def _zip(entries: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc")
    return out.getvalue()


async def test_zip_round_trip(fs: FileSystem) -> None:
    fs.write_file("/src/a.txt", b"alpha")
    fs.write_file("/src/sub/b.txt", b"beta", "600")
    fs.create_directory("/src/empty")
    data = fs.download_dir_zip("/src")
    names = sorted(zipfile.ZipFile(io.BytesIO(data)).namelist())
    assert names == ["a.txt", "empty/", "sub/", "sub/b.txt"]
    fs.upload_zip("/dst/here", data)
    assert fs.read_file("/dst/here/a.txt") == b"alpha"
    assert fs.read_file("/dst/here/sub/b.txt") == b"beta"
    assert fs.file_info("/dst/here/sub/b.txt")["mode"] == "-rw-------"
    assert fs.file_info("/dst/here/empty")["is_dir"] is True
    fs.upload_zip("/dst/io", io.BytesIO(_zip({"x/../y.txt": b"inside", "./z": b"z"})))
    assert [e["name"] for e in fs.list_files("/dst/io")] == ["y.txt", "z"]
    refused(400, fs.download_dir_zip, "/src/a.txt")
    refused(404, fs.download_dir_zip, "/nope")


@pytest.mark.parametrize(
    "archive",
    [
        _zip({"fine.txt": b"ok", "../../x": b"slip"}),
        _zip({"fine.txt": b"ok", "a/../../x": b"slip"}),
        _zip({"fine.txt": b"ok", "/abs": b"slip"}),
        _zip({"fine.txt": b"ok"}, links=("link",)),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "link"],
)
async def test_zip_slip_is_refused_whole(fs: FileSystem, tmp_path: Path, archive: bytes) -> None:
    before = host_tree(tmp_path)
    refused(403, fs.upload_zip, "/dest/inner", archive)
    refused(404, fs.file_info, "/dest")  # nothing written, not even the destination
    assert host_tree(tmp_path) == before


async def test_zip_modes_never_setuid(fs: FileSystem) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        info = zipfile.ZipInfo("tool")
        info.external_attr = (stat.S_IFREG | 0o4755) << 16
        archive.writestr(info, b"#!/bin/sh\n")
        plain = zipfile.ZipInfo("plain")
        plain.external_attr = stat.S_IFREG << 16  # a type and no permission bits: 644
        archive.writestr(plain, b"")
    fs.upload_zip("/z", out.getvalue())
    assert fs.file_info("/z/tool")["mode"] == "-rwxr-xr-x"
    assert fs.file_info("/z/plain")["mode"] == "-rw-r--r--"


async def test_bad_and_oversized_zips(tmp_path: Path) -> None:
    small: list[FileSystem] = [
        SandboxFS(tmp_path / "root", max_zip_bytes=10),
        MemoryFS(max_zip_bytes=10),
    ]
    for fs in small:
        refused(400, fs.upload_zip, "/d", b"not a zip")
        refused(400, fs.upload_zip, "/d", _zip({"big": b"x" * 11}))
        fs.upload_zip("/d", _zip({"ok": b"x" * 10}))
        await fs.aclose()


async def test_list_and_info_answer_the_spec_shapes(fs: FileSystem) -> None:
    fs.write_file("/dir/b.txt", b"12345")
    fs.create_directory("/dir/a")
    items = fs.list_files("/dir")
    assert [(i["name"], i["path"], i["is_dir"], i["size_bytes"]) for i in items] == [
        ("a", "/dir/a", True, 0),
        ("b.txt", "/dir/b.txt", False, 5),
    ]
    for item in items:
        conforms("FListFilesResponseItem", item)
    info = fs.file_info("/dir/b.txt")
    conforms("FFileInfoResponse", info)
    assert info["mode"] == "-rw-r--r--"
    assert info["mod_time"].endswith("Z")
    root = fs.file_info("/")
    assert (root["name"], root["path"], root["is_dir"]) == ("/", "/", True)
    assert fs.list_files("/dir/a") == []
    refused(400, fs.list_files, "/dir/b.txt")
    refused(404, fs.list_files, "/nope")


async def test_move(fs: FileSystem) -> None:
    fs.write_file("/a/f", b"1")
    fs.write_file("/a/g", b"2")
    fs.move("/a/f", "/a/renamed")
    assert fs.read_file("/a/renamed") == b"1"
    refused(404, fs.read_file, "/a/f")
    refused(409, fs.move, "/a/renamed", "/a/g")  # never replaces
    refused(404, fs.move, "/a/none", "/a/x")
    refused(404, fs.move, "/a/g", "/missing/parent/x")
    fs.move("/a", "/b")
    assert fs.read_file("/b/g") == b"2"
    refused(400, fs.move, "/b", "/b/inside")
    refused(400, fs.move, "/", "/x")


async def test_create_directory(fs: FileSystem) -> None:
    fs.create_directory("/x/y/z")
    assert fs.file_info("/x/y/z")["mode"] == "drwxr-xr-x"
    fs.create_directory("/x/y/z")  # mkdir -p: replaying is fine
    fs.create_directory("/m", "700")
    assert fs.file_info("/m")["mode"] == "drwx------"
    refused(409, fs.create_directory, "/x/y/z", parents=False)
    refused(404, fs.create_directory, "/p/q", parents=False)
    fs.write_file("/file", b"")
    refused(409, fs.create_directory, "/file")
    refused(400, fs.create_directory, "/file/sub")
    refused(400, fs.create_directory, "/bad", "999")


async def test_delete_file_and_directory(fs: FileSystem) -> None:
    fs.write_file("/t/a/b/c.txt", b"c")
    fs.write_file("/t/top.txt", b"t")
    refused(400, fs.delete_file, "/t")
    refused(400, fs.delete_directory, "/t/top.txt")
    refused(404, fs.delete_file, "/t/none")
    refused(404, fs.delete_directory, "/none")
    refused(400, fs.delete_directory, "/")
    refused(400, fs.delete_file, "/")
    fs.delete_file("/t/top.txt")
    fs.delete_directory("/t")  # recursive
    assert fs.list_files("/") == []


async def test_set_file_permissions(fs: FileSystem) -> None:
    fs.write_file("/f", b"x")
    fs.create_directory("/d")
    fs.set_file_permissions("/f", "600")
    fs.set_file_permissions("/d", "0700", owner="no-such-user-here", group="no-such-group")
    assert fs.file_info("/f")["mode"] == "-rw-------"
    assert fs.file_info("/d")["mode"] == "drwx------"
    fs.set_file_permissions("/f", "000")
    assert fs.file_info("/f")["mode"] == "----------"
    fs.set_file_permissions("/f", "644", owner=str(os.getuid()), group=str(os.getgid()))
    assert fs.file_info("/f")["mode"] == "-rw-r--r--"
    refused(404, fs.set_file_permissions, "/none", "644")
    refused(400, fs.set_file_permissions, "/f", "rw-r--r--")


async def test_unreadable_file_still_gets_its_mode(sandbox: SandboxFS) -> None:
    sandbox.write_file("/f", b"x", "000")
    sandbox.set_file_permissions("/f", "640")
    assert sandbox.file_info("/f")["mode"] == "-rw-r-----"


# -- the watcher -----------------------------------------------------------------------


async def take(events: AsyncIterator[Event], n: int) -> list[Event]:
    got: list[Event] = []
    with anyio.fail_after(10):
        async for event in events:
            got.append(event)
            if len(got) == n:
                break
    return got


async def test_watch_reports_changes(fs: FileSystem) -> None:
    fs.create_directory("/w")
    started = await fs.watch_start("/w")
    conforms("WatchStartResponse", started)
    watch_id = started["watch_id"]
    events = fs.watch_events(watch_id)
    late = None
    steps: list[tuple[Callable[[], None], list[tuple[str, str, bool]]]] = [
        (lambda: fs.write_file("/w/a.txt", b"1"), [("CREATE", "/w/a.txt", False)]),
        (lambda: fs.write_file("/w/a.txt", b"22"), [("WRITE", "/w/a.txt", False)]),
        (lambda: fs.create_directory("/w/sub"), [("CREATE", "/w/sub", True)]),
        (
            lambda: fs.move("/w/a.txt", "/w/b.txt"),
            [("RENAME", "/w/a.txt", False), ("CREATE", "/w/b.txt", False)],
        ),
        (lambda: fs.write_file("/w/sub/deep", b"not recursive"), []),
        (lambda: fs.delete_file("/w/b.txt"), [("DELETE", "/w/b.txt", False)]),
    ]
    seen: list[Event] = []
    for step, expected in steps:
        step()
        if not expected:
            continue
        got = await take(events, len(expected))
        assert [(e.data["type"], e.data["path"], e.data["is_dir"]) for e in got] == expected
        seen += got
        if late is None:
            late = fs.watch_events(watch_id, after=seen[0].id)  # a reader resuming after id 1
    for event in seen:
        conforms("WatchEventsResponse", event.data)
    assert [e.id for e in seen] == list(range(1, len(seen) + 1))
    assert seen[0].data["name"] == "a.txt"
    await fs.watch_stop(watch_id)
    assert late is not None
    with anyio.fail_after(10):
        rest = [e async for e in late]  # ends when the watch stops
        assert [e.id for e in rest] == [e.id for e in seen[1:]]
        assert [e async for e in events] == []
    refused(404, fs.watch_events, watch_id)
    with pytest.raises(SandboxError) as info:
        await fs.watch_stop(watch_id)
    assert info.value.status == 404


async def test_watch_recursive(fs: FileSystem) -> None:
    fs.create_directory("/r/sub")
    watch_id = (await fs.watch_start("/r", recursive=True))["watch_id"]
    events = fs.watch_events(watch_id)
    fs.write_file("/r/sub/deep/file", b"x")
    got = await take(events, 2)
    assert [(e.data["type"], e.data["path"]) for e in got] == [
        ("CREATE", "/r/sub/deep"),
        ("CREATE", "/r/sub/deep/file"),
    ]
    fs.delete_directory("/r/sub")
    got = await take(events, 3)
    assert sorted((e.data["type"], e.data["path"]) for e in got) == [
        ("DELETE", "/r/sub"),
        ("DELETE", "/r/sub/deep"),
        ("DELETE", "/r/sub/deep/file"),
    ]
    await fs.aclose()  # stops the watch: its streams end
    with anyio.fail_after(10):
        assert [e async for e in events] == []


async def test_watch_start_refusals(fs: FileSystem) -> None:
    fs.write_file("/file", b"")
    for path, status in (("/file", 400), ("/none", 404), ("/..", 403), ("rel", 400)):
        with pytest.raises(SandboxError) as info:
            await fs.watch_start(path)
        assert info.value.status == status


async def test_watch_sees_what_a_process_does(sandbox: SandboxFS) -> None:
    watch_id = (await sandbox.watch_start("/"))["watch_id"]
    events = sandbox.watch_events(watch_id)
    processes = LocalProcesses(sandbox)
    try:
        await processes.exec("sh", args=["-c", "echo hi > made-by-process"])
    finally:
        await processes.aclose()
    (event,) = await take(events, 1)
    assert (event.data["type"], event.data["path"]) == ("CREATE", "/made-by-process")


def test_messages_never_show_the_host_root(tmp_path: Path) -> None:
    fs = SandboxFS(tmp_path / "root")
    (tmp_path / "root" / "out").symlink_to(str(tmp_path))
    errors: list[SandboxError] = []
    for call in (
        lambda: fs.read_file("/out/x"),
        lambda: fs.read_file("/none"),
        lambda: fs.list_files("/"),
        lambda: fs.write_file("/none/../../x", b""),
        lambda: fs.delete_directory("/"),
    ):
        try:
            call()
        except SandboxError as exc:
            errors.append(exc)
    anyio.run(fs.aclose)
    assert len(errors) == 4
    for error in errors:
        assert str(tmp_path) not in error.message
        assert str(tmp_path) not in str(error)


def test_sandbox_root_lifecycle(tmp_path: Path) -> None:
    fs = SandboxFS(tmp_path / "new" / "root")
    assert stat.S_IMODE((tmp_path / "new" / "root").stat().st_mode) == 0o700
    fs.write_file("/a/b", b"x")
    (tmp_path / "new" / "root" / "link").symlink_to(str(tmp_path))
    anyio.run(lambda: fs.aclose(remove=True))
    assert not (tmp_path / "new" / "root").exists()
    assert (tmp_path / "new").exists()  # the link was removed, not followed


def test_a_listing_leaves_out_entries_gone_since_the_directory_was_read(tmp_path: Path) -> None:
    from kernel_async.testing._sandbox import _still_there

    for name in ("a", "b.crdownload", "c"):
        (tmp_path / name).write_bytes(b"x")
    with os.scandir(tmp_path) as it:
        entries = list(it)
    (tmp_path / "b.crdownload").rename(tmp_path / "b")  # a browser finishing its download
    assert sorted(name for name, _ in _still_there(entries)) == ["a", "c"]
