"""The file system on a real cluster: `loligo fs mount` through FUSE, POSIX behaviour as an
application sees it, two mounts seeing each other's changes, an MDS takeover after kill -9,
and client sessions evicted when their mount dies."""

from __future__ import annotations

import errno
import fcntl
import json
import mmap
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cluster import launcher
from tests.integration.fs_fixture import fs_cluster, mounted
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    with fs_cluster(tmp_path_factory.mktemp("fs") / "cluster") as c:
        yield c


def loligo(cluster: launcher.LocalCluster, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "cluster", *args, "--conf", str(cluster.conf)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_posix_basics_on_a_mount(cluster: launcher.LocalCluster, tmp_path: Path) -> None:
    with mounted(cluster, tmp_path / "m") as m:
        root = m.path / "basics"
        root.mkdir()
        f = root / "file"
        f.write_bytes(b"hello world")
        assert f.read_bytes() == b"hello world"
        # hard links share the inode; a symlink names a path
        os.link(f, root / "link")
        os.symlink("file", root / "sym")
        assert os.stat(root / "link").st_ino == os.stat(f).st_ino
        assert os.stat(f).st_nlink == 2
        assert os.readlink(root / "sym") == "file" and (root / "sym").read_bytes() == b"hello world"
        # rename over an existing target is atomic and replaces it
        (root / "other").write_bytes(b"other")
        os.rename(root / "other", root / "link")
        assert (root / "link").read_bytes() == b"other" and os.stat(f).st_nlink == 1
        # directories: nlink, non-empty rmdir, rename across directories
        (root / "d1").mkdir()
        (root / "d1" / "x").write_bytes(b"x")
        with pytest.raises(OSError) as exc:
            os.rmdir(root / "d1")
        assert exc.value.errno == errno.ENOTEMPTY
        (root / "d2").mkdir()
        os.rename(root / "d1" / "x", root / "d2" / "y")
        assert sorted(os.listdir(root / "d2")) == ["y"] and os.listdir(root / "d1") == []
        assert os.stat(root).st_nlink == 4
        # modes, ownership, times with nanoseconds
        os.chmod(f, 0o640)
        os.chown(f, 1234, 5678)
        os.utime(f, ns=(1_000_000_123, 2_000_000_456))
        st = os.stat(f)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 1234, 5678)
        assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_123, 2_000_000_456)
        # truncate, sparse files past 4 GiB, O_APPEND, O_EXCL
        with open(f, "r+b") as fh:
            fh.truncate(5)
        assert f.read_bytes() == b"hello"
        big = root / "big"
        with open(big, "wb") as fh:
            fh.seek(5 << 30)
            fh.write(b"tail")
        assert big.stat().st_size == (5 << 30) + 4
        with open(big, "rb") as fh:
            fh.seek((5 << 30) - 2)
            assert fh.read() == b"\0\0tail"
            fh.seek(123 << 20)
            assert fh.read(4) == b"\0\0\0\0"
        fd = os.open(root / "log", os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
        os.write(fd, b"one ")
        os.write(fd, b"two")
        os.close(fd)
        assert (root / "log").read_bytes() == b"one two"
        with pytest.raises(FileExistsError):
            os.open(root / "log", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        # xattrs
        os.setxattr(f, "user.colour", b"blue")
        assert os.getxattr(f, "user.colour") == b"blue"
        assert "user.colour" in os.listxattr(f)
        os.removexattr(f, "user.colour")
        with pytest.raises(OSError) as exc:
            os.getxattr(f, "user.colour")
        assert exc.value.errno == errno.ENODATA
        # names: too long, and a name that looks like a path component is data
        with pytest.raises(OSError) as exc:
            (root / ("n" * 256)).write_bytes(b"")
        assert exc.value.errno == errno.ENAMETOOLONG
        (root / "..name").write_bytes(b"dots")
        assert (root / "..name").read_bytes() == b"dots"
        # mmap reads and writes
        mm_file = root / "mm"
        mm_file.write_bytes(b"\0" * 8192)
        with open(mm_file, "r+b") as fh, mmap.mmap(fh.fileno(), 8192) as mm:
            mm[100:105] = b"mmap!"
            mm.flush()
        assert mm_file.read_bytes()[100:105] == b"mmap!"
        # an unlinked file stays readable and writable while open
        path = root / "ghost"
        path.write_bytes(b"boo")
        with open(path, "r+b") as fh:
            os.unlink(path)
            assert not path.exists()
            fh.seek(0, 2)
            fh.write(b"!")
            fh.flush()
            os.fsync(fh.fileno())
            fh.seek(0)
            assert fh.read() == b"boo!"
        # fallocate: grow, punch a hole (reads zeros, size kept), zero a range
        fa = root / "fa"
        fa.write_bytes(b"x" * 10000)
        fd = os.open(fa, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, 20000)
            assert os.fstat(fd).st_size == 20000
            punch = getattr(fcntl, "FALLOC_FL_PUNCH_HOLE", 2) | getattr(
                fcntl, "FALLOC_FL_KEEP_SIZE", 1)
            _fallocate(fd, punch, 100, 200)
            assert os.pread(fd, 400, 0) == b"x" * 100 + b"\0" * 200 + b"x" * 100
            assert os.fstat(fd).st_size == 20000
        finally:
            os.close(fd)
        # statfs shows the cluster's space
        sv = os.statvfs(m.path)
        assert sv.f_blocks > 0 and sv.f_bavail > 0 and sv.f_namemax == 255
        # a large file through the page cache, read back whole
        data = os.urandom(9 << 20)
        (root / "large").write_bytes(data)
        assert (root / "large").read_bytes() == data


def _fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.fallocate(fd, mode, ctypes.c_long(offset), ctypes.c_long(length)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def test_two_mounts_see_each_other_at_once(cluster: launcher.LocalCluster,
                                           tmp_path: Path) -> None:
    with mounted(cluster, tmp_path / "a") as a, mounted(cluster, tmp_path / "b") as b:
        (a.path / "shared").mkdir()
        assert os.listdir(b.path / "shared") == []
        (a.path / "shared" / "f").write_bytes(b"from a")
        assert (b.path / "shared" / "f").read_bytes() == b"from a"  # close-to-open
        os.rename(a.path / "shared" / "f", a.path / "shared" / "g")
        assert sorted(os.listdir(b.path / "shared")) == ["g"]
        assert not (b.path / "shared" / "f").exists()
        os.chmod(b.path / "shared" / "g", 0o600)
        assert stat.S_IMODE(os.stat(a.path / "shared" / "g").st_mode) == 0o600
        os.unlink(b.path / "shared" / "g")
        assert not (a.path / "shared" / "g").exists()

        # locks hold across mounts: flock, and fcntl byte ranges
        (a.path / "shared" / "lk").write_bytes(b"lock me")
        fa = open(a.path / "shared" / "lk", "r+b")  # noqa: SIM115
        fb = open(b.path / "shared" / "lk", "r+b")  # noqa: SIM115
        fcntl.flock(fa, fcntl.LOCK_EX)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fb, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fa, fcntl.LOCK_UN)
        fcntl.flock(fb, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fb, fcntl.LOCK_UN)
        fcntl.lockf(fa, fcntl.LOCK_EX, 10, 0)  # bytes 0-9
        fcntl.lockf(fb, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 10)  # bytes 10-19: no conflict
        with pytest.raises(OSError) as exc:
            fcntl.lockf(fb, fcntl.LOCK_EX | fcntl.LOCK_NB, 5, 5)
        assert exc.value.errno in (errno.EAGAIN, errno.EACCES)
        fa.close()  # a close drops the closer's locks
        fcntl.lockf(fb, fcntl.LOCK_EX | fcntl.LOCK_NB, 5, 5)
        fb.close()
        os.unlink(a.path / "shared" / "lk")

        # both race creates and renames in one directory: one correct listing for both
        def race(root: Path, tag: str) -> None:
            for i in range(40):
                (root / "shared" / f"{tag}{i}").write_bytes(tag.encode())
                if i % 2:
                    os.rename(root / "shared" / f"{tag}{i}", root / "shared" / f"{tag}{i}.r")
        threads = [threading.Thread(target=race, args=(m.path, t)) for m, t in ((a, "a"),
                                                                                (b, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        expect = sorted(f"{t}{i}" + (".r" if i % 2 else "") for t in "ab" for i in range(40))
        assert sorted(os.listdir(a.path / "shared")) == expect
        assert sorted(os.listdir(b.path / "shared")) == expect


def _active(cluster: launcher.LocalCluster) -> str:
    data = json.loads(loligo(cluster, "fs", "status", "--format", "json"))
    return data["mdsmap"][0]["name"] if data["mdsmap"] and \
        data["mdsmap"][0]["state"] == "active" else ""


def test_mds_takeover_after_kill_loses_nothing(cluster: launcher.LocalCluster,
                                               tmp_path: Path) -> None:
    with mounted(cluster, tmp_path / "t") as m:
        work = m.path / "takeover"
        work.mkdir()
        held = open(work / "held", "w+b")  # noqa: SIM115 - open across the takeover
        held.write(b"before ")
        held.flush()
        done: list[str] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def writer() -> None:
            try:
                i = 0
                while not stop.is_set() and i < 2000:
                    (work / f"f{i}").write_bytes(str(i).encode())
                    done.append(f"f{i}")  # acknowledged: it must survive
                    i += 1
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=writer)
        t.start()
        wait_for(lambda: len(done) >= 30, 60, "files created before the kill")
        victim = wait_for(lambda: _active(cluster), 30, "an active MDS")
        cluster.kill(f"mds.{victim}")
        wait_for(lambda: (a := _active(cluster)) and a != victim, 60,
                 "the standby to become active")
        count = len(done)
        wait_for(lambda: len(done) >= count + 30 or errors, 60,
                 "creates to go on after the takeover")
        stop.set()
        t.join(60)
        assert not errors, errors
        listed = set(os.listdir(work))
        assert set(done) <= listed, sorted(set(done) - listed)[:10]
        for name in done[:: max(1, len(done) // 50)]:
            assert (work / name).read_bytes() == name[1:].encode()
        # the file held open across the takeover stays usable
        held.write(b"after")
        held.flush()
        os.fsync(held.fileno())
        held.close()
        assert (work / "held").read_bytes() == b"before after"
        cluster.start([f"mds.{victim}"], timeout=60)  # back as a standby


def test_dead_client_is_evicted_and_unmounts_cleanly(cluster: launcher.LocalCluster,
                                                     tmp_path: Path) -> None:
    from mds.client.mount import is_mounted, unmount

    with mounted(cluster, tmp_path / "e") as m:
        (m.path / "evict-me").write_bytes(b"x")
        active = wait_for(lambda: _active(cluster), 30, "an active MDS")

        def clients() -> list[dict]:
            return json.loads(loligo(cluster, "tell", f"mds.{active}", "client", "ls",
                                     "--format", "json"))
        mine = wait_for(lambda: [c for c in clients() if c["client_metadata"]["mount_point"]
                                 == str(m.path)], 30, "the mount's session")
        m.kill()  # kill -9 of the client: the session goes stale, then is evicted
        wait_for(lambda: mine[0]["id"] not in {c["id"] for c in clients()}, 60,
                 "the dead client's eviction")
        assert is_mounted(m.path)
        unmount(m.path)  # a mount whose process died still unmounts cleanly
        assert not is_mounted(m.path)
    # an operator's eviction: the mount fails its calls with EIO from then on
    with mounted(cluster, tmp_path / "e2") as m2:
        (m2.path / "e2file").write_bytes(b"x")
        mine = wait_for(lambda: [c for c in json.loads(loligo(
            cluster, "tell", f"mds.{active}", "client", "ls", "--format", "json"))
            if c["client_metadata"]["mount_point"] == str(m2.path)], 30, "the session")
        loligo(cluster, "tell", f"mds.{active}", "client", "evict", mine[0]["id"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.stat(m2.path / f"nothing-{time.monotonic()}")
            except FileNotFoundError:
                continue
            except OSError as exc:
                assert exc.errno == errno.EIO
                break
        else:
            pytest.fail("the evicted mount kept working")


def test_osd_kill_during_a_workload_loses_nothing_fsynced(cluster: launcher.LocalCluster,
                                                          tmp_path: Path) -> None:
    with mounted(cluster, tmp_path / "o") as m:
        work = m.path / "osdkill"
        work.mkdir()
        payload = os.urandom(300_000)
        written: list[str] = []

        def write(i: int) -> None:
            with open(work / f"d{i}", "wb") as f:
                f.write(payload[i:] + payload[:i])
                f.flush()
                os.fsync(f.fileno())
            written.append(f"d{i}")

        for i in range(10):
            write(i)
        cluster.kill("osd.1")  # the other OSD keeps one copy of every PG: writes go on
        try:
            start = time.monotonic()
            for i in range(10, 30):
                write(i)
            stalled = time.monotonic() - start
        finally:
            cluster.start(["osd.1"], timeout=60)
        for i, name in enumerate(written):
            assert (work / name).read_bytes() == payload[i:] + payload[:i], name
        assert len(written) == 30
        assert stalled < 60, f"writes stalled {stalled:.0f} s after the OSD died"
