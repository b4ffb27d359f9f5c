"""The local cluster: one directory holding config, keyring, data, logs and pid files, and its
daemons started from it, each as its own process on 127.0.0.1.

    DIR/loligo.toml   the config every daemon and command reads (`cluster up` writes it)
    DIR/keyring       keys (mode 0600): client.admin, and mon. (shared by the monitors)
    DIR/data DIR/log DIR/run   daemon state, one log per daemon, pid files

Daemons are found again through their pid files, and a pid is only ever signalled when
/proc/PID/cmdline shows the process runs from this cluster's config: a stale pid file whose
number now belongs to someone else's process must never get that process killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rados_py import config as config_mod
from rados_py.atomic_file import write_atomic
from rados_py.auth import Keyring, default_caps
from rados_py.errors import InvalidArgument, LoligoError, NotFound, Timeout
from rados_py.monclient import MonClient

__all__ = ["ClusterRunning", "Daemon", "LocalCluster", "create", "daemon_argv", "pick_ports",
           "up"]

CONF_NAME = "loligo.toml"
MON_NAMES = "abcde"
MON_COUNTS = (1, 3, 5)
MON_BASE_PORT = 6789  # Ceph's; below Linux's ephemeral range, so a restart finds it free
OSD_BASE_PORT = 6800  # Ceph's OSD range starts here too
DEFAULT_OSDS = 3
DEFAULT_POOL = "data"  # created with a new cluster so that `loligo rados -p data` just works
DEFAULT_FS = "loligofs"  # the file system `cluster up` makes (pools loligofs.meta, .data)
MDS_NAMES = "abcdefgh"
MDS_BASE_PORT = 6900
GATEWAY_BASE_PORT = 7480  # radosgw's
MGR_BASE_PORT = 7000  # the dashboard (Ceph's first dashboard listened on 7000)
GATEWAY_USER_FILE = "gateway-user.json"  # the ready S3 user `cluster up` creates (mode 0600)
ROOT = Path(__file__).resolve().parents[1]  # so `python -m cluster` works uninstalled
POLL = 0.05  # how often a wait re-checks its condition
Out = Callable[[str], None]


class ClusterRunning(LoligoError):
    """Starting a daemon that already runs."""


@dataclass(frozen=True)
class Daemon:
    kind: str  # "mon" (later "osd", "mds", "gateway")
    id: str
    addr: str = ""

    @property
    def name(self) -> str:
        return f"{self.kind}.{self.id}"


DaemonArgv = Callable[[Daemon, Path], list[str]]


def daemon_argv(daemon: Daemon, conf: Path) -> list[str]:
    """`loligo <kind> --conf CONF --id ID` with this interpreter (tests substitute a fake);
    OSDs run as `loligo osd run --conf CONF --id N` (`osd` alone is the OSD admin command)."""
    kind = [daemon.kind, "run"] if daemon.kind == "osd" else [daemon.kind]
    return [sys.executable, "-m", "cluster", *kind, "--conf", str(conf), "--id", daemon.id]


# --- creating a cluster directory ---------------------------------------------------------------

def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the gRPC server binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(count: int, base: int = MON_BASE_PORT, also_offset: int = 0) -> list[int]:
    """`count` ports from `base` up that are free on 127.0.0.1, each with port + `also_offset`
    free too (the metrics endpoint) when that offset is set."""
    ports: list[int] = []
    port = base
    while len(ports) < count:
        if port + also_offset > 65535 or port > 65535:
            raise InvalidArgument(f"not enough free ports on 127.0.0.1 from {base}: "
                                  "choose another --base-port")
        taken = {p + also_offset for p in ports} if also_offset else set()
        if port not in taken and _port_free(port) and (
                not also_offset or _port_free(port + also_offset)):
            ports.append(port)
        port += 1
    return ports


def create(directory: Path, mons: int = 3, base_port: int | None = None,
           osds: int = 0, gateways: int = 0, mdss: int = 0, mgrs: int = 0) -> Path:
    """Write a new cluster's config and keyring into `directory`; the config's path.

    Paths in the config are relative (to the config's directory), so the files explain
    themselves and the directory can be moved while the cluster is down.
    """
    if mons not in MON_COUNTS:
        raise InvalidArgument(f"--mons {mons}: a cluster has 1, 3 or 5 monitors (a majority "
                              "must agree, so an even count adds no safety)")
    directory = directory.expanduser().absolute()
    conf = directory / CONF_NAME
    if directory.exists() and any(directory.iterdir()):
        raise InvalidArgument(f"{directory} is not empty and holds no Loligo cluster "
                              f"({CONF_NAME}): choose a new or empty directory")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    offset = config_mod.SCHEMA["metrics_port_offset"].default
    if not 0 <= osds <= 64:
        raise InvalidArgument(f"--osds {osds}: a local cluster has 0 to 64 OSDs")
    ports = pick_ports(mons, MON_BASE_PORT if base_port is None else base_port, offset)
    osd_base = OSD_BASE_PORT if base_port is None else base_port + 11
    osd_ports = [p for p in pick_ports(osds + len(ports), osd_base, offset)
                 if p not in ports][:osds]
    fsid = str(uuid.uuid4())
    # client.admin (the operator, everything) and mon. (shared by the monitors, as in Ceph);
    # each later daemon kind adds its entities here (osd.N, mds.X...)
    entities = ("client.admin", "mon.", *(f"osd.{i}" for i in range(osds)),
                *(f"mds.{MDS_NAMES[i]}" for i in range(mdss)))
    Keyring.create(directory / "keyring", {e: default_caps(e) for e in entities})
    settings = {"fsid": fsid,
                "mon_host": [f"{n}=127.0.0.1:{p}" for n, p in zip(MON_NAMES, ports,
                                                                   strict=False)],
                "keyring": "keyring", "data_dir": "data", "log_dir": "log", "run_dir": "run",
                # every local OSD runs on this one machine: replicas go to different OSDs
                "osd_crush_chooseleaf_type": "osd"}
    head = (f"# Loligo local cluster {fsid}, written by `loligo cluster up` on "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}.\n# Relative paths are relative to this "
            "file's directory.\n\n")
    sections: dict[str, dict[str, Any]] = {"global": settings}
    for i, port in enumerate(osd_ports):  # a fixed port: a restarted OSD keeps its address
        sections[f"osd.{i}"] = {"osd_port": port}
    taken = set(ports) | set(osd_ports)
    gw_base = GATEWAY_BASE_PORT if base_port is None else base_port + 100
    gw_ports = [p for p in pick_ports(gateways + len(taken), gw_base, offset)
                if p not in taken]
    for i, port in enumerate(gw_ports[:gateways], start=1):
        sections[f"gateway.{i}"] = {"gateway_port": port}
    taken |= set(gw_ports[:gateways])
    mds_base = MDS_BASE_PORT if base_port is None else base_port + 200
    mds_ports = [p for p in pick_ports(mdss + len(taken), mds_base, offset) if p not in taken]
    for i, port in enumerate(mds_ports[:mdss]):
        sections[f"mds.{MDS_NAMES[i]}"] = {"mds_port": port}
    taken |= set(mds_ports[:mdss])
    mgr_base = MGR_BASE_PORT if base_port is None else base_port + 300
    mgr_ports = [p for p in pick_ports(mgrs + len(taken), mgr_base, offset) if p not in taken]
    for name, port in zip(MON_NAMES, mgr_ports[:mgrs], strict=False):
        sections[f"mgr.{name}"] = {"mgr_dashboard_port": port}
    write_atomic(conf, head + config_mod.format_toml(sections))
    for sub in ("data", "log", "run"):
        (directory / sub).mkdir(mode=0o700, exist_ok=True)
    return conf


# --- processes ----------------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not; our own exited children are reaped here)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _runs_from(pid: int, conf: Path) -> bool:
    """Whether process `pid` was started with this config on its command line."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return False
    for raw in args:
        arg = Path(os.fsdecode(raw))
        if arg.name == conf.name and (arg if arg.is_absolute() else cwd / arg) == conf:
            return True
    return False


class LocalCluster:
    """The daemons of the cluster whose config is `conf`: start, stop, find, describe."""

    def __init__(self, conf: Path, *, argv: DaemonArgv = daemon_argv, out: Out = print) -> None:
        self.conf = conf.expanduser().absolute()
        self.config = config_mod.load(self.conf, "client.admin")
        self.argv = argv
        self.out = out
        self.leader = ""  # the monitor that led when `start` last saw one

    @property
    def mons(self) -> list[Daemon]:
        return [Daemon("mon", m.name, m.addr) for m in self.config.mon_host]

    @property
    def daemons(self) -> list[Daemon]:
        """Monitors, OSDs and MDSs (the gateways start after them: `gateways`)."""
        return self.mons + self.osds + self.mdss

    @property
    def mdss(self) -> list[Daemon]:
        """The metadata servers of the config ([mds.X] sections)."""
        import tomllib

        with open(self.conf, "rb") as f:
            sections = tomllib.load(f).get("mds", {})
        found = [Daemon("mds", ident, config_mod.host_port(values.get("public_addr", "127.0.0.1"),
                                                          values.get("mds_port", 0)))
                 for ident, values in (sections.items() if isinstance(sections, dict) else ())
                 if isinstance(values, dict)]
        return sorted(found, key=lambda d: d.id)

    def add_mds_sections(self, count: int = 2) -> list[Daemon]:
        """[mds.a], [mds.b] (and their keys) for a cluster created before the file system
        existed, so that `cluster up` gives every local cluster its MDSs."""
        taken = {int(d.addr.rsplit(":", 1)[1]) for d in self.daemons + self.gateways
                 if d.addr}
        ports = [p for p in pick_ports(len(taken) + count, MDS_BASE_PORT,
                                       self.config.metrics_port_offset) if p not in taken]
        keyring = Keyring.load(self.config.keyring)
        text = self.conf.read_text().rstrip("\n")
        for name, port in zip(MDS_NAMES, ports[:count], strict=False):
            keyring = keyring.with_entity(f"mds.{name}", default_caps(f"mds.{name}"))
            text += f"\n\n[mds.{name}]\nmds_port = {port}\n"
            self.out(f"  added mds.{name} (127.0.0.1:{port}) to {self.conf}")
        keyring.write(self.config.keyring, overwrite=True)
        write_atomic(self.conf, text)
        return self.mdss

    async def create_fs(self, name: str = DEFAULT_FS) -> None:
        """The pools (metadata: 3 replicas, few PGs; data) and `fs new`, once."""
        from rados_py.proto.loligo import mon_pb2

        size = min(self.config.osd_pool_default_size, len(self.osds))
        async with MonClient(self.config, Keyring.load(self.config.keyring)) as client:
            maps = await client.get_maps(latest=True)
            if maps.mdsmap.filesystems:
                return
            names = {p.name for p in maps.osdmap.pools.values()}
            for pool, pgs in ((f"{name}.meta", 16), (f"{name}.data", 32)):
                if pool not in names:
                    await client.command(pool_create=mon_pb2.PoolCreate(name=pool, size=size,
                                                                        pg_num=pgs))
            await client.command(fs_new=mon_pb2.FsNew(name=name, metadata_pool=f"{name}.meta",
                                                      data_pool=f"{name}.data"))
        self.out(f"  created file system {name!r} (pools {name}.meta, {name}.data)")

    @property
    def gateways(self) -> list[Daemon]:
        """The S3 gateways of the config ([gateway.N] sections), started after the cluster."""
        import tomllib

        with open(self.conf, "rb") as f:
            sections = tomllib.load(f).get("gateway", {})
        found = [Daemon("gateway", ident, f"127.0.0.1:{values.get('gateway_port', 0)}")
                 for ident, values in (sections.items() if isinstance(sections, dict) else ())
                 if isinstance(values, dict)]
        return sorted(found, key=lambda d: d.id)

    @property
    def osds(self) -> list[Daemon]:
        """The OSDs of the config: one [osd.N] section each (written by `create`)."""
        import tomllib

        with open(self.conf, "rb") as f:
            data = tomllib.load(f)
        found = []
        sections = data.get("osd", {})  # TOML nests [osd.0] as osd -> 0
        for ident, values in sections.items() if isinstance(sections, dict) else ():
            if ident.isdigit() and isinstance(values, dict):
                port, host = values.get("osd_port", 0), values.get("public_addr", "127.0.0.1")
                found.append(Daemon("osd", ident, config_mod.host_port(host, port) if port
                                    else ""))
        return sorted(found, key=lambda d: int(d.id))

    @property
    def mgrs(self) -> list[Daemon]:
        """The managers (the dashboard) of the config: [mgr.X] sections."""
        import tomllib

        with open(self.conf, "rb") as f:
            sections = tomllib.load(f).get("mgr", {})
        found = [Daemon("mgr", ident, f"127.0.0.1:{values.get('mgr_dashboard_port', 0)}")
                 for ident, values in (sections.items() if isinstance(sections, dict) else ())
                 if isinstance(values, dict)]
        return sorted(found, key=lambda d: d.id)

    def add_osd(self, timeout: float = 60.0) -> Daemon:
        """A new OSD for a running cluster: its key, an [osd.N] section with a free port,
        started. CRUSH then gives it its share of PGs, which backfill onto it."""
        new = max((int(d.id) for d in self.osds), default=-1) + 1
        taken = {int(d.addr.rsplit(":", 1)[1]) for d in self.daemons + self.gateways if d.addr}
        base = max((int(d.addr.rsplit(":", 1)[1]) for d in self.osds if d.addr),
                   default=OSD_BASE_PORT)
        port = next(p for p in pick_ports(len(taken) + 1, base + 1) if p not in taken)
        entity = f"osd.{new}"
        keyring = Keyring.load(self.config.keyring)
        keyring.with_entity(entity, default_caps(entity)).write(self.config.keyring,
                                                                overwrite=True)
        text = self.conf.read_text()
        write_atomic(self.conf, text.rstrip("\n") + f"\n\n[{entity}]\nosd_port = {port}\n")
        daemon = self.daemon(entity)
        self.start([entity], timeout=timeout)
        return daemon

    def add_gateway_section(self) -> Daemon:
        """A [gateway.1] section for a cluster created before there was a gateway, so that
        `cluster up` gives every local cluster its S3/Swift endpoint."""
        taken = {int(d.addr.rsplit(":", 1)[1]) for d in self.daemons if d.addr}
        port = next(p for p in pick_ports(len(taken) + 1, GATEWAY_BASE_PORT) if p not in taken)
        text = self.conf.read_text()
        write_atomic(self.conf, text.rstrip("\n") + f"\n\n[gateway.1]\ngateway_port = {port}\n")
        self.out(f"  added gateway.1 (127.0.0.1:{port}) to {self.conf}")
        return self.daemon("gateway.1")

    def add_mgr_section(self) -> Daemon:
        """A [mgr.a] section for a cluster created before there was a dashboard."""
        taken = {int(d.addr.rsplit(":", 1)[1]) for d in self.daemons + self.gateways
                 if d.addr}
        offset = self.config.metrics_port_offset
        port = next(p for p in pick_ports(len(taken) + 1, MGR_BASE_PORT, offset)
                    if p not in taken)
        text = self.conf.read_text()
        write_atomic(self.conf, text.rstrip("\n")
                     + f"\n\n[mgr.a]\nmgr_dashboard_port = {port}\n")
        self.out(f"  added mgr.a (the dashboard, 127.0.0.1:{port}) to {self.conf}")
        return self.daemon("mgr.a")

    def daemon(self, name: str) -> Daemon:
        for d in self.daemons + self.gateways + self.mgrs:
            if d.name == name:
                return d
        known = ", ".join(d.name for d in self.daemons)
        raise NotFound(f"no daemon {name!r} in {self.conf} (daemons: {known})")

    def pid_file(self, d: Daemon) -> Path:
        return Path(self.config.run_dir) / f"{d.name}.pid"

    def log_file(self, d: Daemon) -> Path:
        return Path(self.config.log_dir) / f"{d.name}.log"

    def pid(self, d: Daemon) -> int | None:
        """The pid of `d` if it runs: its pid file names a live process of this cluster."""
        try:
            pid = int(self.pid_file(d).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid > 0 and _alive(pid) and _runs_from(pid, self.conf) else None

    def running(self) -> dict[str, int]:
        """Every running daemon (including any with a pid file but not in the config)."""
        found = {d.name: d for d in self.daemons}
        run_dir = Path(self.config.run_dir)
        if run_dir.is_dir():
            for f in sorted(run_dir.glob("*.pid")):
                kind, _, ident = f.stem.partition(".")
                found.setdefault(f.stem, Daemon(kind, ident))
        return {name: pid for name, d in found.items() if (pid := self.pid(d)) is not None}

    # --- starting -------------------------------------------------------------------------
    def spawn(self, d: Daemon) -> subprocess.Popen[bytes]:
        """Start `d` in its own session, its stdout/stderr appended to its log."""
        if (pid := self.pid(d)) is not None:
            raise ClusterRunning(f"{d.name} is already running (pid {pid})")
        for sub in (self.config.run_dir, self.config.log_dir, self.config.data_dir):
            Path(sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        self.pid_file(d).unlink(missing_ok=True)  # stale: its process is gone (checked above)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        with open(self.log_file(d), "ab") as log:
            return subprocess.Popen(self.argv(d, self.conf), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, cwd=self.conf.parent,
                                    env=env, start_new_session=True, close_fds=True)

    def _tail(self, d: Daemon, lines: int = 3) -> str:
        try:
            text = self.log_file(d).read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])

    def _exited(self, d: Daemon, proc: subprocess.Popen[bytes]) -> LoligoError:
        tail = self._tail(d)
        return LoligoError(f"{d.name} exited with status {proc.returncode}"
                           + (f": {tail}" if tail else "") + f" (log {self.log_file(d)})")

    def wait_pid_files(self, procs: dict[Daemon, subprocess.Popen[bytes]], timeout: float) -> None:
        """Until each started daemon has written its pid file, or fail naming the first that
        exited or stayed silent."""
        deadline = time.monotonic() + timeout
        pending = dict(procs)
        while pending:
            for d, proc in list(pending.items()):
                if proc.poll() is not None:
                    raise self._exited(d, proc)
                if self.pid(d) == proc.pid:
                    del pending[d]
            if pending and time.monotonic() > deadline:
                names = ", ".join(f"{d.name} (pid {p.pid})" for d, p in pending.items())
                raise Timeout(f"{names} wrote no pid file in {self.config.run_dir} within "
                              f"{timeout:g}s; see {self.config.log_dir}")
            if pending:
                time.sleep(POLL)

    async def _wait_mons(self, procs: dict[Daemon, subprocess.Popen[bytes]], names: set[str],
                         timeout: float, need_leader: bool) -> None:
        keyring = Keyring.load(self.config.keyring)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = ""
        async with MonClient(self.config, keyring) as client:
            while True:
                for d, proc in procs.items():
                    if proc.poll() is not None:
                        raise self._exited(d, proc)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    seen = last or "none answering"
                    raise Timeout(f"monitors not ready within {timeout:g}s ({seen}); see the "
                                  f"logs in {self.config.log_dir}")
                try:
                    st = await client.status(timeout=min(remaining, 2.0))
                    answered = names & set(st.answered)
                    leader = st.leader if st.from_leader else ""
                    now = (f"{len(answered)}/{len(names)} answering, "
                           + (f"leader mon.{leader} (term {st.view.term})" if leader
                              else "no leader yet"))
                except Timeout:
                    answered, leader, now = set(), "", f"0/{len(names)} answering"
                if now != last:
                    self.out(f"  monitors: {now}")
                    last = now
                if answered == names and (leader or not need_leader):
                    self.leader = leader
                    return
                await asyncio.sleep(POLL)

    def start(self, names: Sequence[str] | None = None, *, timeout: float = 60.0,
              wait: bool = True, need_leader: bool | None = None) -> dict[str, int]:
        """Start daemons (default: all) and wait until each runs and, for monitors, answers
        (with a leader elected when `need_leader`, by default when all start: one monitor
        alone cannot elect one); on failure stop what was started. {name: pid}."""
        chosen = [self.daemon(n) for n in names] if names is not None else self.daemons
        procs: dict[Daemon, subprocess.Popen[bytes]] = {}
        try:
            for d in chosen:
                procs[d] = self.spawn(d)
                self.out(f"  started {d.name} (pid {procs[d].pid}), log {self.log_file(d)}")
            self.wait_pid_files(procs, timeout)
            mons = {d.id for d in procs if d.kind == "mon"}
            if wait and mons:  # a leader needs a majority: only expected when all start
                leader = names is None if need_leader is None else need_leader
                asyncio.run(self._wait_mons(procs, mons, timeout, need_leader=leader))
        except BaseException:
            self._terminate({d.name: p.pid for d, p in procs.items() if p.poll() is None},
                            grace=5.0, quiet=True)
            raise
        return {d.name: p.pid for d, p in procs.items()}

    # --- stopping -------------------------------------------------------------------------
    def _terminate(self, pids: dict[str, int], grace: float, quiet: bool = False) -> list[str]:
        """TERM each, KILL those still running after `grace`; one report line each."""
        report = []
        for pid in pids.values():
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        pending = dict(pids)
        while pending and time.monotonic() < deadline:
            pending = {n: p for n, p in pending.items() if _alive(p)}
            if pending:
                time.sleep(POLL)
        for name, pid in pids.items():
            if name in pending and _alive(pid) and _runs_from(pid, self.conf):
                _signal(pid, signal.SIGKILL)
                _wait_dead(pid, 5.0)
                report.append(f"killed {name} (pid {pid}): still running {grace:g}s after TERM")
            else:
                report.append(f"stopped {name} (pid {pid})")
        if not quiet:
            for line in report:
                self.out(line)
        return report

    def stop(self, names: Sequence[str] | None = None, grace: float = 10.0) -> list[str]:
        """Stop daemons (default: every running one); stale pid files are removed."""
        if names is None:
            running = self.running()
        else:
            running = {}
            for name in names:
                if (pid := self.pid(self.daemon(name))) is None:
                    raise NotFound(f"{name} is not running")
                running[name] = pid
        report = self._terminate(running, grace)
        still = self.running()
        run_dir = Path(self.config.run_dir)
        for f in sorted(run_dir.glob("*.pid")) if run_dir.is_dir() else ():
            if f.stem not in still and (names is None or f.stem in names):
                f.unlink(missing_ok=True)
        return report

    def kill(self, name: str) -> int:
        """SIGKILL one daemon (a crash, for fault drills); its pid."""
        d = self.daemon(name)
        pid = self.pid(d)
        if pid is None:
            raise NotFound(f"{name} is not running")
        _signal(pid, signal.SIGKILL)
        _wait_dead(pid, 5.0)
        self.out(f"killed {name} (pid {pid})")
        return pid

    async def create_pool(self, name: str) -> None:
        """Create a replicated pool with the configured defaults (min(size, OSDs) replicas)."""
        from rados_py.proto.loligo import mon_pb2

        size = min(self.config.osd_pool_default_size, len(self.osds))
        async with MonClient(self.config, Keyring.load(self.config.keyring)) as client:
            await client.command(pool_create=mon_pb2.PoolCreate(name=name, size=size))

    async def wait_healthy(self, timeout: float) -> str:
        """Until the monitors say HEALTH_OK (every PG active+clean), showing the PG states as
        they change; past `timeout`, say what is still wrong and go on. The health."""
        async with MonClient(self.config, Keyring.load(self.config.keyring)) as client:
            deadline = time.monotonic() + timeout
            shown = ""
            while True:
                answer = await client.status()
                status = answer.view
                if answer.from_leader:
                    self.leader = answer.leader
                if status.health == "HEALTH_OK":
                    self.out("  HEALTH_OK: all PGs active+clean")
                    return status.health
                states = ", ".join(f"{s.count} {s.state}" for s in status.pgs.by_state)
                if states and states != shown:
                    self.out(f"  waiting for PGs: {states}")
                    shown = states
                if time.monotonic() > deadline:
                    for check in status.checks:
                        self.out(f"  {status.health}: {check.summary} -> {check.detail}")
                    return status.health
                await asyncio.sleep(0.5)

    # --- describing -----------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Endpoints and credentials as data (`cluster info --format json`)."""
        return {"conf": str(self.conf), "fsid": self.config.fsid,
                "keyring": str(self.config.keyring), "entity": "client.admin",
                "log_dir": str(self.config.log_dir),
                "mons": [{"name": d.id, "addr": d.addr, "pid": self.pid(d),
                          "running": self.pid(d) is not None, "log": str(self.log_file(d))}
                         for d in self.daemons if d.kind == "mon"],
                "osds": [{"id": int(d.id), "addr": d.addr, "pid": self.pid(d),
                          "running": self.pid(d) is not None, "log": str(self.log_file(d))}
                         for d in self.osds],
                "mdss": [{"name": d.id, "addr": d.addr, "pid": self.pid(d),
                          "running": self.pid(d) is not None, "log": str(self.log_file(d))}
                         for d in self.mdss],
                "gateway": self.gateway_info(),
                "dashboard": self.dashboard_info()}

    def dashboard_info(self) -> dict[str, Any] | None:
        """Where the first manager serves the dashboard."""
        if not self.mgrs:
            return None
        d = self.mgrs[0]
        return {"name": d.name, "url": f"http://{d.addr}/", "pid": self.pid(d),
                "running": self.pid(d) is not None, "log": str(self.log_file(d))}

    def start_mgrs(self, timeout: float = 60.0) -> None:
        """Start the managers that are not running (after the gateways: the dashboard shows
        the gateway's users)."""
        stopped = [d.name for d in self.mgrs if self.pid(d) is None]
        if stopped:
            self.start(stopped, timeout=timeout)

    def gateway_info(self) -> dict[str, Any] | None:
        """The first gateway's endpoint and the ready user `cluster up` made for it."""
        import json

        if not self.gateways:
            return None
        d = self.gateways[0]
        user_file = self.conf.parent / GATEWAY_USER_FILE
        user = json.loads(user_file.read_text()) if user_file.exists() else None
        return {"name": d.name, "url": f"http://{d.addr}", "pid": self.pid(d),
                "running": self.pid(d) is not None, "log": str(self.log_file(d)),
                "user": user}

    def start_gateways(self, timeout: float = 60.0) -> None:
        """Start the gateways (after the OSDs: a gateway's pools are sized by the OSDs up) and
        make the ready S3 user once."""
        if not self.gateways:
            return
        stopped = [d.name for d in self.gateways if self.pid(d) is None]
        if stopped:
            self.start(stopped, timeout=timeout)
        user_file = self.conf.parent / GATEWAY_USER_FILE
        if not user_file.exists():
            user = asyncio.run(_create_ready_user(self.config))
            write_atomic(user_file, json_dumps(user), mode=0o600)
            self.out(f"  created gateway user {user['user_id']!r}")


async def _create_ready_user(config: config_mod.Config) -> dict[str, Any]:
    from gateway.pools import open_pools
    from gateway.users import UserStore
    from rados_py.rados import Rados

    async with Rados(config) as rados:
        pools = await open_pools(rados, config.gateway_pool_prefix, config.gateway_pool_pg_num)
        # a Swift key too, so the same user works with Swift once the gateway speaks it
        user = await UserStore(pools.users).create("loligo", "Loligo user",
                                                   swift_user="loligo:swift")
    return user.to_json()


def json_dumps(data: Any) -> str:
    import json

    return json.dumps(data, indent=2) + "\n"


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended since we checked: fine
        os.kill(pid, sig)


def _wait_dead(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(POLL)


def up(directory: Path, mons: int | None = None, base_port: int | None = None, *,
       timeout: float = 60.0, argv: DaemonArgv = daemon_argv, out: Out = print,
       wait: bool = True, osds: int | None = None) -> LocalCluster:
    """Create the cluster in `directory` (or reuse the one there) and start whatever of it is
    not running, as often as called: on a running cluster this starts nothing and the caller
    prints its endpoints again; after a crash it starts only what is down.

    A cluster keeps its fsid, keys, data, ports and daemons across restarts: `mons` must
    match or be omitted; `base_port` and `osds` only shape a new cluster.
    """
    directory = directory.expanduser().absolute()
    conf = directory / CONF_NAME
    if conf.exists():
        cluster = LocalCluster(conf, argv=argv, out=out)
        have = len(cluster.mons)
        if mons is not None and mons != have:
            raise InvalidArgument(f"{directory} holds a cluster of {have} monitors, not "
                                  f"{mons}: omit --mons to restart it, or use a new directory")
        first = cluster.mons[0].addr.rsplit(":", 1)[1] if cluster.mons else ""
        if base_port is not None and str(base_port) != first:
            out(f"note: the cluster in {directory} keeps its ports (monitors from {first}); "
                "--base-port shapes a new cluster only")
        if osds is not None and osds != len(cluster.osds):
            out(f"note: the cluster in {directory} keeps its {len(cluster.osds)} OSDs; add "
                "one with `loligo cluster add-osd`")
        running = cluster.running()
        stopped = [d.name for d in cluster.daemons if d.name not in running]
        if not running:
            out(f"Restarting the cluster in {directory} (fsid {cluster.config.fsid})")
        elif stopped:
            out(f"The cluster in {directory} is running; starting what is not: "
                f"{', '.join(stopped)}")
        else:
            out(f"The cluster in {directory} is already running (fsid "
                f"{cluster.config.fsid})")
        if stopped:
            cluster.start(stopped, timeout=timeout, wait=wait,
                          need_leader=not any(n.startswith("mon.") for n in running))
        new = False
    else:
        osds = DEFAULT_OSDS if osds is None else osds
        # a gateway stores into OSDs: a cluster without any gets none
        conf = create(directory, 3 if mons is None else mons, base_port, osds,
                      gateways=1 if osds else 0, mdss=2 if osds else 0, mgrs=1)
        cluster = LocalCluster(conf, argv=argv, out=out)
        out(f"Created cluster {cluster.config.fsid} in {directory}")
        cluster.start(timeout=timeout, wait=wait)
        new = True
    if new and wait and cluster.osds:
        asyncio.run(cluster.create_pool(DEFAULT_POOL))
        out(f"  created pool {DEFAULT_POOL!r}")
    if wait and cluster.osds:
        if not cluster.mdss:
            cluster.add_mds_sections()
            cluster.start([d.name for d in cluster.mdss], timeout=timeout)
        asyncio.run(cluster.create_fs())
        if not cluster.gateways:
            cluster.add_gateway_section()
        cluster.start_gateways(timeout)
    if wait:
        if not cluster.mgrs:
            cluster.add_mgr_section()
        cluster.start_mgrs(timeout)
    if wait and cluster.osds:
        asyncio.run(cluster.wait_healthy(timeout))
    return cluster
