"""The monitor daemon: Raft (mon/raft.py) wired to a disk (mon/store.py), the network (gRPC) and
the cluster-map state machine (mon/cluster_maps.py).

One task, the *raft loop*, owns the Raft node and the maps: it takes events from a queue (ticks,
messages from peers, proposals), steps the node, makes every persist effect durable in one
transaction (group commit across all events queued at that moment), and only then sends
messages, applies committed commands and answers their proposers. Peers get messages through one
sender task each, so a slow or dead monitor never stalls the loop.

    loligo mon --conf FILE --id NAME
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mon import cluster_maps, health
from mon.cluster_maps import ClusterMaps, PoolDefaults
from mon.metrics import MonMetrics
from mon.pg_stats import FailureReports, PgStats
from mon.raft import (
    AppendEntries,
    Apply,
    ApplySnapshot,
    LeaderChanged,
    ProposalResult,
    Propose,
    RaftConfig,
    RaftNode,
    Receive,
    Role,
    Send,
    SnapshotTaken,
    Tick,
)
from mon.raft_log import EntryKind, PersistEntries, PersistSnapshot, PersistState
from mon.store import MonStore
from rados_py import auth, daemon_runner, rpc
from rados_py.config import Config, ConfigError, load
from rados_py.errors import Timeout
from rados_py.proto.loligo import mon_pb2, raft_pb2_grpc

log = logging.getLogger(__name__)
TICK = 0.02  # seconds between Raft ticks when nothing else happens
PEER_QUEUE = 512  # messages waiting for one peer; beyond that the oldest are dropped (Raft resends)


@dataclass
class _Pending:
    future: asyncio.Future[mon_pb2.CommandResult]
    since: float  # monotonic time of the proposal, for the commit latency metric


class MonDaemon:
    def __init__(self, config: Config, name: str):
        self.config = config
        self.name = name
        self.mons = {m.name: m.addr for m in config.mon_host}
        if name not in self.mons:
            raise ConfigError(f"mon.{name} is not in mon_host ({', '.join(self.mons)})")
        if not config.fsid:
            raise ConfigError("fsid is not set in the configuration")
        self.fsid = config.fsid
        self.keyring = auth.Keyring.load(config.keyring)
        self.secret = self.keyring.service_secret
        self.data_dir = Path(config.data_dir) / f"mon.{name}"
        self.maps = ClusterMaps.initial(
            self.fsid, sorted(self.mons.items()), config.osd_crush_chooseleaf_type,
            PoolDefaults(config.osd_pool_default_pg_num, config.osd_pool_default_size))
        self.applied_index = 0
        self.last_snapshot_index = 0
        self.leader: str | None = None
        self.peer_seen: dict[str, float] = {}
        self.mds_seen: dict[str, float] = {}  # leader only: last beacon of each MDS
        # leader only: each OSD's last beacon, with the up_from of the life it came from
        self.osd_seen: dict[int, tuple[int, float]] = {}
        self.osd_down_since: dict[int, float] = {}  # leader only: when it saw each OSD down
        self.pg_stats = PgStats()  # leader only: PG states and usage the OSDs report
        self.failure_reports = FailureReports()  # leader only: OSDs' reports of peers
        self._next_failure_check = 0.0
        self.pending: dict[bytes, _Pending] = {}
        self.maps_changed = asyncio.Condition()
        self.authenticator = auth.Authenticator(self.keyring, ticket_ttl=config.ticket_ttl,
                                                proof_window=config.auth_proof_window,
                                                audience=f"{self.fsid}/mon")
        self._events: asyncio.Queue = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._peer_queues: dict[str, asyncio.Queue] = {}
        self._channels = []
        self.metrics = MonMetrics(name)
        self.metrics.watch_pgs(self._pg_summary)
        self.node: RaftNode
        self.store: MonStore
        self.server = None

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self.store = await asyncio.to_thread(MonStore, self.data_dir / "store.db", self.fsid)
        persistent = await asyncio.to_thread(self.store.load)
        if persistent.snapshot is not None:
            self._install(persistent.snapshot.data, persistent.snapshot.index)
            self.last_snapshot_index = persistent.snapshot.index
        c = self.config
        raft_config = RaftConfig(heartbeat_interval=c.mon_heartbeat_interval,
                                 election_timeout_min=c.mon_election_timeout_min,
                                 election_timeout_max=c.mon_election_timeout_max)
        self.node = RaftNode(self.name, tuple(sorted(self.mons)), persistent, random.Random(),
                             raft_config, now=time.monotonic(), applied_index=self.applied_index)
        from mon.service import MonRaftService, MonService, server_auth

        self.server = rpc.make_server(self.mons[self.name], c, server_auth(self.secret),
                                      interceptors=[self.metrics.interceptor()])
        from rados_py.proto.loligo import mon_pb2_grpc

        mon_pb2_grpc.add_MonServicer_to_server(MonService(self), self.server)
        raft_pb2_grpc.add_MonRaftServicer_to_server(MonRaftService(self), self.server)
        await self.server.start()
        # metrics are an aid: a taken port costs the endpoint, never the monitor
        self.metrics.daemon.serve_beside(self.mons[self.name], c.metrics_port_offset)
        for peer in self.mons:
            if peer != self.name:
                self._peer_queues[peer] = asyncio.Queue(PEER_QUEUE)
                self._tasks.append(asyncio.create_task(self._peer_sender(peer),
                                                       name=f"mon.{self.name}->mon.{peer}"))
        self._tasks.append(asyncio.create_task(self._raft_loop(), name=f"mon.{self.name} raft"))
        log.info("mon.%s listening on %s (term %d, applied %d, osdmap e%d)", self.name,
                 self.mons[self.name], self.node.term, self.applied_index,
                 self.maps.osdmap.epoch)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.server is not None:
            await rpc.stop_server(self.server, self.config.rpc_stop_grace)
        for channel in self._channels:
            await channel.close()
        for pending in self.pending.values():
            if not pending.future.done():
                pending.future.cancel()
        await asyncio.to_thread(self.store.close)
        self.metrics.close()
        log.info("mon.%s stopped", self.name)

    # --- the raft loop --------------------------------------------------------------------------
    async def _raft_loop(self) -> None:
        while True:
            try:
                first = await asyncio.wait_for(self._events.get(), TICK)
            except TimeoutError:
                first = None
            events = [Tick(time.monotonic())]
            if first is not None:
                events.append(first)
            while not self._events.empty():
                events.append(self._events.get_nowait())
            await self._step(events)
            self._check_failures()

    async def _step(self, events: list) -> None:
        effect_lists = [self.node.step(e) for e in events]
        await self._persist([e for effects in effect_lists for e in effects])
        # Each proposal makes Raft send every follower all it lacks; within one batch only the
        # last AppendEntries per follower matters (it carries the newest entries and commit
        # index). Dropping the others is what message loss does, which Raft is built for.
        newest = {e.to: e for effects in effect_lists for e in effects
                  if isinstance(e, Send) and isinstance(e.message, AppendEntries)}
        for effects in effect_lists:
            await self._act([e for e in effects if not isinstance(e, Send)
                             or not isinstance(e.message, AppendEntries) or newest[e.to] is e])

    async def _persist(self, effects: list) -> None:
        durable = [e for e in effects if isinstance(e, PersistState | PersistEntries |
                                                    PersistSnapshot)]
        if durable:
            with self.metrics.timed(self.metrics.fsync_latency):
                await asyncio.to_thread(self.store.persist, durable)

    async def _act(self, effects: list) -> None:
        changed = False
        for effect in effects:
            match effect:
                case Send(to=to, message=message):
                    self._send(to, message)
                case Apply(entries=entries):
                    changed |= self._apply(entries)
                case ApplySnapshot(snapshot=snapshot):
                    log.info("mon.%s: installing the leader's snapshot at index %d",
                             self.name, snapshot.index)
                    self._install(snapshot.data, snapshot.index)
                    self.last_snapshot_index = snapshot.index
                    changed = True
                case ProposalResult(request_id=rid, error=error) if error is not None:
                    self._resolve(rid, None)
                case LeaderChanged(leader_id=leader, term=term):
                    # a new leader gives every daemon a full grace
                    self.mds_seen.clear()
                    self.osd_seen.clear()
                    self.osd_down_since.clear()
                    if leader != self.leader:
                        log.info("mon.%s: leader is now %s (term %d)", self.name,
                                 f"mon.{leader}" if leader else "unknown", term)
                    self.leader = leader
                    # proposals in flight may or may not commit: their senders retry with the
                    # same request id, which the state machine applies at most once
                    for rid in list(self.pending):
                        self._resolve(rid, None)
        if changed:
            async with self.maps_changed:
                self.maps_changed.notify_all()
        if self.applied_index - self.last_snapshot_index >= self.config.mon_snapshot_interval:
            await self._snapshot()
        self._update_gauges()

    def _update_gauges(self) -> None:
        m = self.metrics
        m.osdmap_epoch.set(self.maps.osdmap.epoch)
        m.monmap_epoch.set(self.maps.monmap.epoch)
        m.term.set(self.node.term)
        m.is_leader.set(int(self.is_leader))
        m.quorum_size.set(len(self.quorum()[0]) if self.is_leader else 0)
        m.commit_index.set(self.node.commit_index)
        m.applied_index.set(self.applied_index)

    def _apply(self, entries) -> bool:
        before = self.epochs()
        for entry in entries:
            if entry.kind is EntryKind.COMMAND:
                command = mon_pb2.MonCommand()
                try:
                    command.ParseFromString(entry.payload)
                except Exception:
                    log.error("mon.%s: entry %d does not parse; skipped", self.name, entry.index)
                    command = None
                if command is not None:
                    self.maps, result = cluster_maps.apply(self.maps, command)
                    self.metrics.command_applied(command, result.code == 0)
                    self._resolve(entry.request_id, result)
            self.applied_index = entry.index
        return self.epochs() != before

    def epochs(self) -> tuple[int, int]:
        """(OSDMap epoch, MDSMap epoch): subscribers hear of a change of either."""
        return self.maps.osdmap.epoch, self.maps.mdsmap.epoch

    # --- failure detection (leader) -------------------------------------------------------------
    def _propose_once(self, request_id: str, **command) -> None:
        """Propose a command of the leader's own; the request id makes a repeat a no-op."""
        msg = mon_pb2.MonCommand(request_id=request_id.encode(), **command)
        if msg.request_id not in self.maps.applied:
            self._events.put_nowait(Propose(msg.SerializeToString(), msg.request_id))

    def _check_failures(self) -> None:
        """The leader's watch: fail any MDS silent for mds_beacon_grace, mark down any OSD
        silent for mon_osd_report_grace, and out any OSD down for mon_osd_down_out_interval."""
        now = time.monotonic()
        if not self.is_leader or now < self._next_failure_check:
            return
        self._next_failure_check = now + min(0.25, self.config.mds_beacon_interval)
        self._check_osds(now)
        mdsmap = self.maps.mdsmap
        for mds in mdsmap.daemons:
            seen = self.mds_seen.setdefault(mds.name, now)
            if now - seen > self.config.mds_beacon_grace:
                log.warning("mon.%s: mds.%s sent no beacon for %.1f s: failing it", self.name,
                            mds.name, now - seen)
                fail = mon_pb2.MonCommand(
                    request_id=f"mds-fail:{mds.name}:{mdsmap.epoch}".encode(),
                    mds_fail=mon_pb2.MdsFail(name=mds.name, mdsmap_epoch=mdsmap.epoch))
                self._events.put_nowait(Propose(fail.SerializeToString(), fail.request_id))
                self.mds_seen[mds.name] = now  # do not propose again before the grace

    def _check_osds(self, now: float) -> None:
        osdmap = self.maps.osdmap
        c = self.config
        up = sum(1 for o in osdmap.osds.values() if o.up)
        needed = max(1, min(c.mon_osd_min_down_reporters, up - 1))
        for osd in osdmap.osds.values():
            if osd.up:
                self.osd_down_since.pop(osd.id, None)
                reporters = self.failure_reports.reporters(osd.id, osdmap, now,
                                                           c.osd_heartbeat_grace * 2)
                refused = bool(reporters) and self.failure_reports.refused(osd.id, reporters)
                if ((len(reporters) >= needed or refused)
                        and "nodown" not in osdmap.flags):
                    log.warning("mon.%s: osd.%d reported failed by %s: marking it down",
                                self.name, osd.id, ", ".join(f"osd.{r}" for r in reporters))
                    self.failure_reports.forget(osd.id)
                    self._propose_once(f"osd-failed:{osd.id}:{osdmap.epoch}",
                                       osd_mark=mon_pb2.OsdMark(ids=[osd.id],
                                                                state=mon_pb2.OsdMark.DOWN))
                    continue
                life, seen = self.osd_seen.get(osd.id, (-1, now))
                if life != osd.up_from:
                    # a new life (a boot since that beacon): its grace starts now, never at
                    # the last beacon of the process that died
                    seen = now
                    self.osd_seen[osd.id] = (osd.up_from, now)
                if now - seen > c.mon_osd_report_grace and "nodown" not in osdmap.flags:
                    log.warning("mon.%s: osd.%d sent no beacon for %.1f s: marking it down",
                                self.name, osd.id, now - seen)
                    self._propose_once(f"osd-down:{osd.id}:{osdmap.epoch}",
                                       osd_mark=mon_pb2.OsdMark(ids=[osd.id],
                                                                state=mon_pb2.OsdMark.DOWN))
            elif osd.is_in and osd.up_from:  # down, still in: out after the interval
                since = self.osd_down_since.setdefault(osd.id, now)
                interval = c.mon_osd_down_out_interval
                if interval and now - since > interval and "noout" not in osdmap.flags:
                    log.warning("mon.%s: osd.%d down for %.0f s: marking it out", self.name,
                                osd.id, now - since)
                    self._propose_once(f"osd-out:{osd.id}:{osdmap.epoch}",
                                       osd_mark=mon_pb2.OsdMark(ids=[osd.id],
                                                                state=mon_pb2.OsdMark.OUT,
                                                                automatic=True))

    async def beacon(self, request: mon_pb2.BeaconRequest, timeout: float
                     ) -> mon_pb2.BeaconReply:
        """A daemon is alive. An OSD learns whether the map holds it up; an MDS is registered
        (or its new address is) through the log when needed."""
        self.metrics.beacons.labels(next((k for k in ("osd", "mds", "failure")
                                          if request.HasField(k)), "none")).inc()
        if request.HasField("failure"):
            f = request.failure
            self.failure_reports.report(f.reporter, f.target, f.still_alive, time.monotonic(),
                                        f.epoch, f.immediate)
            return mon_pb2.BeaconReply(mdsmap_epoch=self.maps.mdsmap.epoch)
        if request.HasField("osd"):
            osd = self.maps.osdmap.osds.get(request.osd.id)
            if osd is not None and osd.up and osd.addr == request.osd.addr:
                self.osd_seen[request.osd.id] = (osd.up_from, time.monotonic())
            if osd is not None and osd.up:
                self.pg_stats.report(request.osd.id, request.osd, time.monotonic())
            state = "unknown" if osd is None else ("up" if osd.up and osd.addr ==
                                                   request.osd.addr else "down")
            return mon_pb2.BeaconReply(state=state, mdsmap_epoch=self.maps.mdsmap.epoch)
        mds = request.mds
        self.mds_seen[mds.name] = time.monotonic()
        known = self.maps.mdsmap.get(mds.name)
        if known is None or known.addr != mds.addr:
            epoch = self.maps.mdsmap.epoch
            command = mon_pb2.MonCommand(request_id=f"mds-beacon:{mds.name}:{mds.addr}:"
                                                    f"{epoch}".encode(), mds_beacon=mds)
            await self.propose(command, timeout)
            known = self.maps.mdsmap.get(mds.name)
        return mon_pb2.BeaconReply(mdsmap_epoch=self.maps.mdsmap.epoch,
                                   state=known.state if known else "unknown")

    def _install(self, data: bytes, index: int) -> None:
        state = mon_pb2.ClusterState()
        state.ParseFromString(data)
        self.maps = ClusterMaps.from_proto(state, self.maps.pool_defaults)
        self.applied_index = index

    async def _snapshot(self) -> None:
        data = self.maps.to_proto().SerializeToString(deterministic=True)
        index = self.applied_index
        effects = self.node.step(SnapshotTaken(index, data))
        await self._persist(effects)
        self.last_snapshot_index = index
        await self._act([e for e in effects if not isinstance(e, PersistSnapshot)])

    def _resolve(self, request_id: bytes, result: mon_pb2.CommandResult | None) -> None:
        pending = self.pending.pop(request_id, None)
        if pending is not None and not pending.future.done():
            if result is not None:
                self.metrics.commit_latency.observe(time.monotonic() - pending.since)
            pending.future.set_result(result)

    # --- talking to peers -----------------------------------------------------------------------
    def _send(self, to: str, message) -> None:
        queue = self._peer_queues.get(to)
        if queue is None:
            return
        if queue.full():
            queue.get_nowait()  # drop the oldest: Raft retransmits what matters
        queue.put_nowait(message)

    async def _peer_sender(self, peer: str) -> None:
        from mon.raft_wire import to_proto

        creds = rpc.ClientCredentials(self.fsid, self._own_ticket)
        channel = rpc.open_channel(self.mons[peer], self.config, creds)
        self._channels.append(channel)
        stub = raft_pb2_grpc.MonRaftStub(channel)
        queue = self._peer_queues[peer]
        timeout = max(0.2, self.config.mon_election_timeout_min)
        while True:
            message = await queue.get()
            try:
                await stub.Deliver(to_proto(message, self.fsid), timeout=timeout)
            except Exception as e:
                log.debug("mon.%s -> mon.%s: %s", self.name, peer, e)

    async def _own_ticket(self) -> str:
        # monitors speak to each other as the cluster service entity ("mon.")
        ticket = auth.issue_ticket(self.secret, auth.SERVICE_ENTITY, {"mon": "allow *"},
                                   self.config.ticket_ttl, time.time())
        return ticket.token

    def receive(self, message) -> None:
        """A Raft message from a peer (called by the MonRaft servicer)."""
        self.peer_seen[message.sender] = time.monotonic()
        self._events.put_nowait(Receive(message))

    # --- for the services -----------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        return self.node.role is Role.LEADER

    async def propose(self, command: mon_pb2.MonCommand, timeout: float
                      ) -> mon_pb2.CommandResult | None:
        """Propose and wait until the command is applied here. None: the outcome is unknown
        (leadership changed): the sender retries with the same request id."""
        rid = command.request_id
        if rid in self.maps.applied:
            return self.maps.applied[rid]
        pending = self.pending.get(rid)
        if pending is None:
            pending = _Pending(asyncio.get_running_loop().create_future(), time.monotonic())
            self.pending[rid] = pending
            self._events.put_nowait(Propose(command.SerializeToString(), rid))
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), timeout)
        except TimeoutError:
            raise Timeout(f"mon.{self.name}: the command was not committed within {timeout:.1f} "
                          "s; is a majority of monitors up? (loligo mon stat)") from None

    def quorum(self) -> tuple[list[str], dict[str, float]]:
        """Monitors heard from within mon_quorum_grace (this one included), and how long ago
        each peer was last heard from."""
        now = time.monotonic()
        ago = {p: now - t for p, t in self.peer_seen.items()}
        grace = self.config.mon_quorum_grace
        members = sorted([self.name] + [p for p, a in ago.items() if a <= grace])
        return members, ago

    def _pg_summary(self) -> mon_pb2.PgSummary | None:
        if not self.is_leader:
            return None
        return self.pg_stats.summary(self.maps.osdmap, self.config.mon_osd_report_grace,
                                     time.monotonic())

    def status(self) -> mon_pb2.MonStatus:
        quorum, ago = self.quorum()
        checks = health.osd_checks(self.maps.osdmap)
        pgs = self._pg_summary()
        if pgs is not None:
            checks = (health.mon_checks(self.maps.monmap, quorum, ago, str(self.config.log_dir))
                      + checks + health.pg_checks(pgs))
        else:
            # only the leader hears from every monitor: a follower's view of the quorum would
            # be wrong, so it reports none and `loligo status` takes the leader's
            quorum = []
        out = mon_pb2.MonStatus(
            name=self.name, fsid=self.fsid, state=self.node.role.value, leader=self.leader or "",
            term=self.node.term, quorum=quorum, commit_index=self.node.commit_index,
            applied_index=self.applied_index, osdmap_epoch=self.maps.osdmap.epoch,
            health=health.overall(checks))
        if pgs is not None:
            out.pgs.CopyFrom(pgs)
        for name, addr in sorted(self.mons.items()):
            seen = name == self.name or 0 <= ago.get(name, -1.0) <= self.config.mon_quorum_grace
            out.peers.add(name=name, addr=addr, reachable=seen,
                          last_seen_ago=0.0 if name == self.name else ago.get(name, -1.0))
        for c in checks:
            out.checks.add(code=c.code, severity=c.severity, summary=c.summary, detail=c.detail)
        return out


# --- the process ------------------------------------------------------------------------------

def main(conf: str | Path, name: str) -> int:
    """`loligo mon --conf FILE --id NAME`: run one monitor until SIGTERM."""
    config = load(Path(conf), entity=f"mon.{name}")
    return daemon_runner.run(lambda: MonDaemon(config, name), config, f"mon.{name}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
