"""Hosts for tests: network namespaces joined by veth pairs on one bridge, so that daemons of
one cluster run on several addresses and the network between them can fail.

    with HostNet(3) as net:            # namespaces <tag>h1..h3, 10.77.K.1..3/24
        net.cut("h3", ["h1", "h2"])    # h3 and h1,h2 no longer hear each other
        net.slow("h2", "1mbit")        # tc tbf on h2's link
        net.lossy("h2", 5)             # 5 % of h2's packets to and from the hosts dropped
        net.heal()

The test itself stays in its own namespace and reaches every host through the bridge (address
.254), so a client can see both sides of a partition. Everything made here -- namespaces, the
bridge, processes running inside the namespaces -- is removed on exit, also when the test
fails; namespaces left by a run that died (its pid is in their name) are removed on the next.
Needs root and `ip netns` (iproute2), nftables and tc: `skip_reason()` says what is missing.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from cluster import launcher

__all__ = ["HostNet", "hosts_cluster", "skip_reason"]

NS_PREFIX = "lgt"  # lgt<pid>x<tag>h<N>: the owning test process is in the name
_NS_RE = re.compile(rf"{NS_PREFIX}(\d+)x[0-9a-f]+h\d+")
TABLE = "loligo_test"


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): "
                           f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def skip_reason() -> str:
    """Why network-namespace tests cannot run here ("" when they can)."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns)"
    for tool in ("ip", "nft", "tc"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` (apt-get install iproute2 nftables)"
    probe = f"{NS_PREFIX}probe{os.getpid()}"
    made = _run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    try:
        nft = _run("ip", "netns", "exec", probe, "nft", "list", "tables", check=False)
        if nft.returncode != 0:
            return f"nftables does not work in a namespace: {nft.stderr.strip()}"
    finally:
        _run("ip", "netns", "del", probe, check=False)
    return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_inside(ns: str) -> None:
    """SIGKILL every process running in namespace `ns` (all started by this fixture)."""
    pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
    for pid in map(int, pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(_alive(int(p)) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)


def remove_orphans() -> None:
    """Namespaces (and their bridge) left by test runs whose process is gone."""
    for line in _run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NS_RE.fullmatch(name)
        if match and not _alive(int(match[1])):
            _kill_inside(name)
            _run("ip", "netns", "del", name, check=False)
    links = _run("ip", "-o", "link", "show", "type", "bridge", check=False).stdout
    for bridge in re.findall(rf"^\d+: ({NS_PREFIX}(\d+)br)", links, re.M):
        if not _alive(int(bridge[1])):
            _run("ip", "link", "del", bridge[0], check=False)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.77.0.0/16 that no route of this machine uses yet."""
    routes = _run("ip", "-4", "route", "show").stdout
    for third in [*range(0, 256)]:
        net = ipaddress.IPv4Network(f"10.77.{third}.0/24")
        if f"10.77.{third}." not in routes:
            return net
    raise RuntimeError("no free /24 in 10.77.0.0/16 for test hosts")


class HostNet:
    """`count` hosts h1..hN, each a network namespace with one address on a shared bridge."""

    def __init__(self, count: int) -> None:
        self.tag = f"{NS_PREFIX}{os.getpid()}x{uuid.uuid4().hex[:4]}"
        self.bridge = f"{NS_PREFIX}{os.getpid()}br"[:15]
        self.names = [f"h{i}" for i in range(1, count + 1)]
        self.subnet: ipaddress.IPv4Network | None = None
        self.addr: dict[str, str] = {}
        self._cuts: dict[str, set[str]] = {}

    def ns(self, host: str) -> str:
        return f"{self.tag}{host}"

    @property
    def gateway(self) -> str:
        """The test's own address on the bridge."""
        assert self.subnet is not None
        return str(self.subnet.network_address + 254)

    def __enter__(self) -> HostNet:
        remove_orphans()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        self.subnet = _free_subnet()
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for i, host in enumerate(self.names, start=1):
            ns, outside = self.ns(host), f"{self.tag[-8:]}{host}"[:15]
            addr = str(self.subnet.network_address + i)
            _run("ip", "netns", "add", ns)
            _run("ip", "link", "add", outside, "type", "veth", "peer", "name", "eth0",
                 "netns", ns)
            _run("ip", "link", "set", outside, "master", self.bridge, "up")
            for argv in (("ip", "addr", "add", f"{addr}/24", "dev", "eth0"),
                         ("ip", "link", "set", "eth0", "up"), ("ip", "link", "set", "lo", "up")):
                self.exec(host, *argv)
            self.exec(host, "nft", f"add table inet {TABLE}; "
                      f"add chain inet {TABLE} input {{ type filter hook input priority 0; }}; "
                      f"add chain inet {TABLE} output {{ type filter hook output priority 0; }}")
            self.addr[host] = addr

    def close(self) -> None:
        """Kill what runs inside the hosts, then remove namespaces and bridge (idempotent)."""
        for host in self.names:
            ns = self.ns(host)
            if ns in _run("ip", "netns", "list", check=False).stdout:
                _kill_inside(ns)
                _run("ip", "netns", "del", ns, check=False)
        _run("ip", "link", "del", self.bridge, check=False)

    def exec(self, host: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return _run("ip", "netns", "exec", self.ns(host), *argv)

    def argv(self, host: str, argv: Sequence[str]) -> list[str]:
        """`argv` run inside `host`."""
        return ["ip", "netns", "exec", self.ns(host), *argv]

    # --- faults -------------------------------------------------------------------------------
    def cut(self, host: str, others: Iterable[str], direction: str = "both") -> None:
        """`host` stops hearing (`in`), reaching (`out`) or both the `others` hosts; the
        test's own address stays reachable."""
        others = list(others)
        if direction not in ("in", "out", "both"):
            raise ValueError(f"direction {direction!r}: in, out or both")
        for other in others:
            peer = self.addr[other]
            if direction in ("in", "both"):
                self.exec(host, "nft", f"add rule inet {TABLE} input ip saddr {peer} drop")
            if direction in ("out", "both"):
                self.exec(host, "nft", f"add rule inet {TABLE} output ip daddr {peer} drop")
        self._cuts.setdefault(host, set()).update(others)

    def cut_except_ports(self, host: str, others: Iterable[str], ports: Iterable[int]) -> None:
        """`host` and the `others` lose every TCP connection between them except those to or
        from `ports` (e.g. keep the monitors, lose the OSDs' traffic)."""
        peers = ", ".join(self.addr[o] for o in others)
        keep = ", ".join(str(p) for p in ports)
        for chain, match in (("input", "saddr"), ("output", "daddr")):
            self.exec(host, "nft", f"add rule inet {TABLE} {chain} ip {match} {{ {peers} }} "
                      f"tcp sport != {{ {keep} }} tcp dport != {{ {keep} }} drop")

    def heal(self) -> None:
        """Every cut undone, every link up and unshaped."""
        for host in self.names:
            self.exec(host, "nft", f"flush chain inet {TABLE} input; "
                      f"flush chain inet {TABLE} output")
            self.exec(host, "ip", "link", "set", "eth0", "up")
            _run("ip", "netns", "exec", self.ns(host), "tc", "qdisc", "del", "dev", "eth0",
                 "root", check=False)
        self._cuts.clear()

    def lossy(self, host: str, percent: int) -> None:
        """`host` drops `percent` % of the packets it receives from the other hosts and of
        those it sends them (nftables numgen random; the test's own traffic is spared)."""
        peers = ", ".join(a for h, a in self.addr.items() if h != host)
        for chain, match in (("input", "saddr"), ("output", "daddr")):
            self.exec(host, "nft", f"add rule inet {TABLE} {chain} ip {match} {{ {peers} }} "
                      f"numgen random mod 100 < {percent} drop")

    def link_down(self, host: str) -> None:
        self.exec(host, "ip", "link", "set", "eth0", "down")

    def slow(self, host: str, rate: str = "1mbit", burst: str = "32kbit",
             latency: str = "400ms") -> None:
        """A token bucket (tc tbf) on `host`'s outgoing link."""
        self.exec(host, "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", rate,
                  "burst", burst, "latency", latency)


@contextlib.contextmanager
def hosts_cluster(directory: Path, net: HostNet, layout: dict[str, Sequence[str]],
                  settings: dict[str, object] | None = None, base_port: int = 6789
                  ) -> Iterator[launcher.LocalCluster]:
    """A cluster whose daemons run on `net`'s hosts: layout {"h1": ["mon.a", "osd.0", ...]}.

    Each daemon binds its host's address (monitors through mon_host, OSDs through
    public_addr), each OSD goes under its host in CRUSH, and the default rule spreads
    replicas over hosts. Not started: use `tests.integration.started`.
    """
    where = {d: h for h, ds in layout.items() for d in ds}
    mons = sorted(d.split(".")[1] for d in where if d.startswith("mon."))
    osds = sorted(int(d.split(".")[1]) for d in where if d.startswith("osd."))
    assert osds == list(range(len(osds))), "OSDs are numbered 0..N-1"
    conf = launcher.create(directory, mons=len(mons), base_port=base_port, osds=len(osds))
    text = conf.read_text()
    mon_host = ", ".join(f'"{m}={net.addr[where[f"mon.{m}"]]}:{base_port + i}"'
                         for i, m in enumerate(mons))
    text = re.sub(r"^mon_host = .*$", f"mon_host = [{mon_host}]", text, count=1, flags=re.M)
    text = text.replace('osd_crush_chooseleaf_type = "osd"', 'osd_crush_chooseleaf_type = "host"')
    extra = "".join(f"{key} = {value!r}\n" for key, value in (settings or {}).items())
    text = text.replace("[global]\n", "[global]\n" + extra, 1)
    for osd in osds:
        host = where[f"osd.{osd}"]
        text = text.replace(f"[osd.{osd}]\n", f'[osd.{osd}]\npublic_addr = "{net.addr[host]}"\n'
                            f'osd_crush_location = "host={host}"\n', 1)
    conf.write_text(text)

    def argv(daemon: launcher.Daemon, path: Path) -> list[str]:
        return net.argv(where[daemon.name], launcher.daemon_argv(daemon, path))

    yield launcher.LocalCluster(conf, argv=argv, out=lambda *_: None)
