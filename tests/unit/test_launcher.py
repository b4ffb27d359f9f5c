"""The local cluster launcher: the files it writes, the ports it picks, and the processes it
starts and stops -- with a fake daemon (a small Python loop that writes its pid file like the
real ones), so no monitor is needed. Every process a test starts is killed in a finalizer."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cluster import launcher
from rados_py import config as config_mod
from rados_py.auth import Keyring
from rados_py.errors import InvalidArgument, LoligoError, NotFound, Timeout

FAKE_DAEMON = r"""
import os, signal, sys
conf, name, mode = sys.argv[1:4]
pid_file = os.path.join(os.path.dirname(conf), "run", name + ".pid")
if mode == "crash":
    print("fake failure: cannot open the store", flush=True)
    sys.exit(3)
def stop(*_):
    if os.path.exists(pid_file):
        os.unlink(pid_file)
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else stop)
if mode != "silent":
    with open(pid_file, "w") as f:
        f.write(f"{os.getpid()}\n")
while True:
    signal.pause()
"""


def fake(mode: str = "ok") -> launcher.DaemonArgv:
    def argv(d: launcher.Daemon, conf: Path) -> list[str]:
        return [sys.executable, "-c", FAKE_DAEMON, str(conf), d.name, mode]
    return argv


def _procs_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for one cluster; afterwards every process started from it is killed."""
    directory = tmp_path / "cluster"
    yield directory
    for pid in _procs_mentioning(str(directory)):
        os.kill(pid, signal.SIGKILL)
        launcher._wait_dead(pid, 5)


def base_port() -> int:
    return 20000 + uuid.uuid4().int % 20000


def quiet() -> Callable[[str], None]:
    lines: list[str] = []
    return lines.append


# --- files and ports ----------------------------------------------------------------------------

def test_create_writes_config_and_private_keyring(cluster_dir: Path) -> None:
    conf = launcher.create(cluster_dir, mons=3, base_port=base_port())
    assert conf == cluster_dir / "loligo.toml"
    cfg = config_mod.load(conf, "client.admin")
    assert str(uuid.UUID(cfg.fsid)) == cfg.fsid
    assert [m.name for m in cfg.mon_host] == ["a", "b", "c"]
    assert {m.host for m in cfg.mon_host} == {"127.0.0.1"}
    assert len({m.port for m in cfg.mon_host}) == 3
    assert cfg.osd_crush_chooseleaf_type == "osd"
    for option, name in (("keyring", "keyring"), ("data_dir", "data"), ("log_dir", "log"),
                         ("run_dir", "run")):
        assert Path(getattr(cfg, option)) == cluster_dir / name
    for sub in ("data", "log", "run"):
        assert (cluster_dir / sub).is_dir()
    assert stat.S_IMODE((cluster_dir / "keyring").stat().st_mode) == 0o600
    assert stat.S_IMODE(cluster_dir.stat().st_mode) == 0o700
    ring = Keyring.load(cluster_dir / "keyring")
    assert set(ring) == {"client.admin", "mon."}
    assert ring.get("client.admin").caps["mon"] == "allow *"
    assert "mon_host" in conf.read_text() and conf.read_text().startswith("# Loligo")


def test_create_refuses_bad_counts_and_foreign_directories(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="1, 3 or 5 monitors"):
        launcher.create(tmp_path / "x", mons=2)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    with pytest.raises(InvalidArgument, match="not empty and holds no Loligo cluster"):
        launcher.create(tmp_path / "home")
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == ["notes.txt"]


def test_pick_ports_skips_taken_ports() -> None:
    with socket.socket() as taken, socket.socket() as taken_metrics:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        free = launcher.pick_ports(2, base=port)
        assert port not in free and len(set(free)) == 2 and min(free) > port
        if port + 1 + 1000 <= 65535:
            try:
                taken_metrics.bind(("127.0.0.1", port + 1 + 1000))
            except OSError:
                return  # someone else holds it: the point is made either way
            taken_metrics.listen()
            assert port + 1 not in launcher.pick_ports(1, base=port + 1, also_offset=1000)
    with pytest.raises(InvalidArgument, match="not enough free ports"):
        launcher.pick_ports(3, base=65534)


# --- processes ----------------------------------------------------------------------------------

def test_up_down_and_up_again_on_a_running_cluster(cluster_dir: Path) -> None:
    cluster = launcher.up(cluster_dir, 3, base_port(), argv=fake(), out=quiet(), wait=False, osds=0)
    running = cluster.running()
    assert sorted(running) == ["mon.a", "mon.b", "mon.c"]
    for name, pid in running.items():
        assert (cluster_dir / "run" / f"{name}.pid").read_text().strip() == str(pid)
        assert str(cluster.conf).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    info = cluster.info()
    assert info["conf"] == str(cluster_dir / "loligo.toml") and info["gateway"] is None
    assert [(m["name"], m["running"]) for m in info["mons"]] == [("a", True), ("b", True),
                                                                 ("c", True)]
    said: list[str] = []
    same = launcher.up(cluster_dir, 3, base_port(), argv=fake(), out=said.append, wait=False,
                       osds=2)  # what `./scripts/run` does the second time
    assert same.running() == running, "a running cluster is left as it is"
    assert said[-1].startswith(f"The cluster in {cluster_dir} is already running")
    assert any("keeps its ports" in line for line in said)
    assert any("keeps its 0 OSDs" in line for line in said)
    cluster.kill("mon.b")
    said.clear()
    launcher.up(cluster_dir, argv=fake(), out=said.append, wait=False)
    assert said[0].endswith("starting what is not: mon.b")
    assert cluster.running()["mon.a"] == running["mon.a"]
    running = cluster.running()
    report = cluster.stop(grace=5)
    assert sorted(report) == sorted(f"stopped {n} (pid {p})" for n, p in running.items())
    assert cluster.running() == {} and list((cluster_dir / "run").iterdir()) == []
    assert not any(launcher._alive(p) for p in running.values())
    fsid = cluster.config.fsid
    with pytest.raises(InvalidArgument, match="cluster of 3 monitors, not 5"):
        launcher.up(cluster_dir, 5, argv=fake(), out=quiet(), wait=False)
    again = launcher.up(cluster_dir, argv=fake(), out=quiet(), wait=False)  # a restart
    assert again.config.fsid == fsid and len(again.running()) == 3
    again.stop(grace=5)


def test_kill_start_restart_one_daemon(cluster_dir: Path) -> None:
    cluster = launcher.up(cluster_dir, 3, base_port(), argv=fake(), out=quiet(), wait=False, osds=0)
    pid_b = cluster.running()["mon.b"]
    assert cluster.kill("mon.b") == pid_b
    assert not launcher._alive(pid_b) and "mon.b" not in cluster.running()
    with pytest.raises(NotFound, match=r"mon\.b is not running"):
        cluster.kill("mon.b")
    with pytest.raises(NotFound, match=r"no daemon 'mon.z' .*\(daemons: mon.a, mon.b, mon.c\)"):
        cluster.kill("mon.z")
    pids = cluster.start(["mon.b"], wait=False)
    assert cluster.running()["mon.b"] == pids["mon.b"] != pid_b
    with pytest.raises(launcher.ClusterRunning, match=r"mon\.b is already running"):
        cluster.start(["mon.b"], wait=False)
    cluster.stop(["mon.b"], grace=5)
    assert sorted(cluster.running()) == ["mon.a", "mon.c"]
    cluster.stop(grace=5)


def test_stale_pid_file_never_signals_a_foreign_process(cluster_dir: Path) -> None:
    launcher.create(cluster_dir, 1, base_port())
    cluster = launcher.LocalCluster(cluster_dir / "loligo.toml", argv=fake(), out=quiet())
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid_file = cluster_dir / "run" / "mon.a.pid"
        pid_file.write_text(f"{stranger.pid}\n")  # a recycled pid: someone else's process
        assert cluster.pid(cluster.daemon("mon.a")) is None and cluster.running() == {}
        assert cluster.stop(grace=1) == []
        assert stranger.poll() is None, "the foreign process must survive `cluster down`"
        assert not pid_file.exists(), "the stale pid file is cleaned up"
        pid_file.write_text("not a pid")
        assert cluster.pid(cluster.daemon("mon.a")) is None
        with pytest.raises(NotFound):
            cluster.kill("mon.a")
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_stop_kills_a_daemon_that_ignores_term(cluster_dir: Path) -> None:
    cluster = launcher.up(cluster_dir, 1, base_port(), argv=fake("stubborn"), out=quiet(),
                          wait=False, osds=0)
    pid = cluster.running()["mon.a"]
    start = time.monotonic()
    report = cluster.stop(grace=0.3)
    assert report == [f"killed mon.a (pid {pid}): still running 0.3s after TERM"]
    assert time.monotonic() - start < 5
    assert not launcher._alive(pid) and cluster.running() == {}


def test_start_reports_a_crashing_daemon_with_its_log(cluster_dir: Path) -> None:
    with pytest.raises(LoligoError, match=r"mon.a exited with status 3: fake failure: cannot "
                                          r"open the store \(log .*mon.a.log\)"):
        launcher.up(cluster_dir, 1, base_port(), argv=fake("crash"), out=quiet(), wait=False,
                    osds=0)


def test_start_gives_up_on_a_daemon_without_pid_file(cluster_dir: Path) -> None:
    conf = launcher.create(cluster_dir, 1, base_port())
    cluster = launcher.LocalCluster(conf, argv=fake("silent"), out=quiet())
    with pytest.raises(Timeout, match=r"mon.a \(pid \d+\) wrote no pid file"):
        cluster.start(timeout=0.5, wait=False)
    assert _procs_mentioning(str(conf)) == [], "what was started is stopped again"


def test_a_cluster_made_before_the_gateway_gets_one(tmp_path: Path) -> None:
    conf = launcher.create(tmp_path / "old", mons=1, osds=1, base_port=base_port())
    cluster = launcher.LocalCluster(conf, out=lambda *_: None)
    assert cluster.gateways == []
    added = cluster.add_gateway_section()
    assert [d.name for d in cluster.gateways] == ["gateway.1"] and added.name == "gateway.1"
    port = int(added.addr.rsplit(":", 1)[1])
    assert port >= launcher.GATEWAY_BASE_PORT
    assert port not in {int(d.addr.rsplit(":", 1)[1]) for d in cluster.daemons if d.addr}
    assert launcher.LocalCluster(conf).config.fsid == cluster.config.fsid  # still loads


def test_a_new_cluster_has_a_dashboard_at_base_port_plus_300(tmp_path: Path) -> None:
    base = base_port()
    conf = launcher.create(tmp_path / "c", mons=1, base_port=base, osds=1, gateways=1, mdss=1,
                           mgrs=1)
    cluster = launcher.LocalCluster(conf)
    [mgr] = cluster.mgrs
    port = int(mgr.addr.rsplit(":", 1)[1])
    assert mgr.name == "mgr.a" and port >= base + 300
    assert config_mod.load(conf, "mgr.a").mgr_dashboard_port == port
    info = cluster.info()
    assert info["dashboard"]["url"] == f"http://127.0.0.1:{port}/"
    assert not info["dashboard"]["running"]
    old = launcher.create(tmp_path / "old", mons=1, base_port=base_port())
    older = launcher.LocalCluster(old, out=lambda *_: None)
    assert older.mgrs == [] and older.add_mgr_section().name == "mgr.a"
