"""Peering's pure rules (osd/peering.py) and a member's PG state in a store (osd/pgs.py)."""

from __future__ import annotations

import pytest

from osd import pgmeta
from osd.objectstore import MemoryStore
from osd.peering import ABSENT, Entry, Peer, backfill_missing, plan
from osd.pg import pack_version
from osd.pg_events import Persist, Respond, ServeRead
from osd.pg_member import Member, MemberState
from osd.pgs import PgStore
from rados_py.proto.loligo import osd_pb2


def v(epoch: int, seq: int) -> int:
    return pack_version(epoch, seq)


def history(*writes: tuple[int, bytes] | tuple[int, bytes, bool], start: int = 1) -> list[Entry]:
    """Log entries (epoch, oid[, removed]) with consecutive seqs from `start`."""
    out = []
    for i, w in enumerate(writes):
        seq = start + i
        out.append(Entry(seq, v(w[0], seq), w[1], bool(w[2]) if len(w) > 2 else False))
    return out


def test_a_new_pg_has_no_authority_and_nothing_missing() -> None:
    p = plan([Peer(0), Peer(1), Peer(2)], primary=0)
    assert p.auth is None and p.auth_log == []
    assert all(not m.missing and not m.backfill for m in p.members.values())


def test_identical_members_miss_nothing() -> None:
    log = history((3, b"a"), (3, b"b"))
    peers = [Peer(o, True, les=3, les_acting=(0, 1, 2), log=list(log)) for o in (0, 1, 2)]
    p = plan(peers, primary=1)
    assert p.auth == 1  # ties go to the primary: no log to pull
    assert all(m.missing == {} and m.append == [] for m in p.members.values())


def test_a_member_that_was_down_gets_the_entries_it_missed() -> None:
    full = history((3, b"a"), (3, b"b"), (4, b"a"), (4, b"c", True), (4, b"d"))
    behind = Peer(2, True, les=3, log=full[:2])
    auth = Peer(0, True, les=4, log=full)
    p = plan([auth, Peer(1, True, les=4, log=full), behind], primary=0)
    member = p.members[2]
    assert not member.backfill and member.keep_through == 2
    assert [e.seq for e in member.append] == [3, 4, 5]
    # the newest entry per object decides; a removal means "must not exist"
    assert member.missing == {b"a": v(4, 3), b"c": ABSENT, b"d": v(4, 5)}
    assert p.members[1].missing == {}


def test_the_newest_activation_wins_over_a_longer_log() -> None:
    # osd.0 led epoch 5 and wrote seq 11 locally, then died before any replica had it;
    # osd.1 and osd.2 activated at epoch 7 and wrote seq 11 and 12 of their own
    common = history(*[(5, b"x%d" % i) for i in range(10)])
    old = Peer(0, True, les=5, log=[*common, Entry(11, v(5, 11), b"lost")])
    new_log = [*common, Entry(11, v(7, 11), b"y"), Entry(12, v(7, 12), b"x3")]
    p = plan([old, Peer(1, True, les=7, log=new_log), Peer(2, True, les=7, log=new_log)],
             primary=1)
    assert p.auth == 1
    member = p.members[0]
    assert member.keep_through == 10 and [e.seq for e in member.append] == [11, 12]
    assert member.missing == {b"y": v(7, 11), b"x3": v(7, 12)}
    # the divergent object is not in the new history: only the auth's store knows its state
    assert p.unresolved == {b"lost"}
    p.resolve({b"lost": ABSENT})
    assert member.missing[b"lost"] == ABSENT and p.unresolved == set()


def test_a_divergent_entry_the_new_history_rewrote_needs_the_new_version() -> None:
    common = history((5, b"a"))
    old = Peer(0, True, les=5, log=[*common, Entry(2, v(5, 2), b"a")])
    new = Peer(1, True, les=6, log=[*common, Entry(2, v(6, 2), b"a")])
    p = plan([old, new], primary=1)
    assert p.members[0].missing == {b"a": v(6, 2)} and p.unresolved == set()


def test_a_member_whose_log_ends_before_the_auths_tail_is_backfilled() -> None:
    auth = Peer(0, True, les=9, log_tail=100, log=history((9, b"z"), start=101))
    far = Peer(1, True, les=2, log=history((2, b"a")))
    p = plan([auth, far, Peer(2)], primary=0)
    assert p.members[1].backfill and p.members[2].backfill
    assert p.members[1].append == auth.log and p.auth_tail == 100


def test_a_persisted_missing_set_is_kept() -> None:
    log = history((3, b"a"), (3, b"b"))
    peers = [Peer(0, True, les=3, log=log),
             Peer(1, True, les=3, log=log, missing={b"a": v(3, 1)})]
    assert plan(peers, primary=0).members[1].missing == {b"a": v(3, 1)}


def test_backfill_compares_inventories() -> None:
    auth_objects = {b"a": 5, b"b": 6, b"c": 7}
    auth_missing = {b"b": 9, b"c": ABSENT, b"d": 4}  # the auth's own store lags there
    target = {b"a": 5, b"b": 6, b"e": 1}
    assert backfill_missing(auth_objects, auth_missing, target) == {
        b"b": 9, b"d": 4, b"e": ABSENT}


# --- a member's rules (osd/pg_member.py), its store (osd/pgs.py) -----------------------------

def rep(seq: int, oid: bytes, data: bytes, epoch: int = 3, tid: int = 0,
        round_: tuple[int, int] | None = (0, 0)) -> osd_pb2.RepOpRequest:
    return osd_pb2.RepOpRequest(
        epoch=epoch, pgid="1.0", seq=seq, oid=oid, from_osd=0,
        entry=osd_pb2.PgLogEntry(version=v(epoch, seq), oid=oid, client="c", tid=tid or seq),
        ops=[osd_pb2.StoreOp(kind=osd_pb2.StoreOp.WRITE_FULL, data=data)],
        interval=osd_pb2.Interval(epoch=round_[0], round=round_[1]) if round_ else None)


R6 = osd_pb2.Interval(epoch=6, round=1)  # the peering round that activates the member below


class MemberDriver:
    """A member over a real store, driven as the OSD's host drives it."""

    def __init__(self, store: MemoryStore, state: MemberState | None = None) -> None:
        self.pgs = PgStore(store)
        self.store = store
        self.ids = iter(range(1, 1 << 30))
        self.member = Member(0, "1.0", state or MemberState(), lambda: next(self.ids))
        self.answers: dict[int, object] = {}

    @classmethod
    async def loaded(cls, store: MemoryStore) -> MemberDriver:
        pgs = PgStore(store)
        await pgs.collections()
        return cls(store, await pgs.load("1.0"))

    async def run(self, effects: list) -> None:
        await self.pgs.collections()
        for e in effects:
            if isinstance(e, Respond):
                self.answers[e.rid] = e.error or e.msg
            elif isinstance(e, Persist):
                try:
                    txn = (await self.pgs.push_transaction("1.0", e.what)
                           if isinstance(e.what, osd_pb2.PushRequest)
                           else self.pgs.transaction("1.0", e))
                    await self.store.submit(txn)
                    self.pgs.committed("1.0", e.what)
                    error = ""
                except Exception as exc:
                    error = str(exc)
                more, _ = self.member.persisted(e.pid, error)
                await self.run(more)
            elif isinstance(e, ServeRead):
                reply = (await self.pgs.pull(e.msg) if isinstance(e.msg, osd_pb2.PullRequest)
                         else await self.pgs.inventory("1.0", e.msg.after, 100))
                self.answers[e.rid] = reply

    async def ask(self, msg: object) -> object:
        rid = next(self.ids)
        await self.run(self.member.handle(rid, msg))
        return self.answers.pop(rid)


def refused(answer: object, match: str) -> bool:
    return isinstance(answer, tuple) and answer[0] == "StaleEpoch" and match in answer[1]


@pytest.mark.asyncio
async def test_member_state_survives_a_reload_and_follows_an_activation() -> None:
    store = MemoryStore()
    m = MemberDriver(store)
    for seq, oid in ((1, b"a"), (2, b"b"), (3, b"lost")):
        assert (await m.ask(rep(seq, oid, oid * 3))).applied
    assert not (await m.ask(rep(3, b"lost", b"again"))).applied  # a resend: applied once
    assert refused(await m.ask(rep(3, b"other", b"x", tid=99)), "taken")
    assert refused(await m.ask(rep(5, b"other", b"x", tid=98)), "past the end")  # no hole
    reply = await m.ask(osd_pb2.PgQuery(pgid="1.0", interval=R6))  # fences the old round
    assert reply.exists and reply.info.last_seq == 3 and reply.info.last_update == v(3, 3)
    assert refused(await m.ask(rep(4, b"late", b"from the old round")), "older than the round")
    # the auth's history replaced seq 3; the member must fetch b"c" and lose b"lost"
    await m.ask(osd_pb2.PgActivate(
        epoch=6, pgid="1.0", from_osd=1, les=6, acting=[1, 0], keep_through=2, interval=R6,
        append=[osd_pb2.PgLogRecord(seq=3, entry=osd_pb2.PgLogEntry(version=v(6, 3),
                                                                     oid=b"c"))],
        missing=[osd_pb2.MissingItem(oid=b"c", need=v(6, 3)),
                 osd_pb2.MissingItem(oid=b"lost", need=ABSENT)]))
    fresh = await MemberDriver.loaded(store)  # as after a restart
    state = fresh.member.state
    assert (state.last_seq, state.les, state.les_acting) == (3, 6, (1, 0))
    assert state.missing == {b"c": v(6, 3), b"lost": ABSENT}
    assert fresh.member.dedup.get("c", 3) is None  # the rolled-back write is forgotten
    assert refused(await fresh.ask(rep(4, b"late", b"old", epoch=5, round_=(3, 1))),
                   "older than the round")
    assert refused(await fresh.ask(rep(4, b"new", b"x", epoch=6, round_=(6, 1))),
                   "activated for")  # restarted: not activated for that round yet
    assert refused(await m.ask(osd_pb2.PgActivate(
        epoch=5, pgid="1.0", les=5, acting=[1, 0], interval=osd_pb2.Interval(epoch=5, round=9))),
        "older than the round")
    # recovery (in the activated process): the object arrives in two parts, the removal in one
    await m.ask(osd_pb2.PushRequest(pgid="1.0", oid=b"c", version=v(6, 3), first=True,
                                    data=b"12", interval=R6,
                                    xattrs=[osd_pb2.KeyValue(key=b"k", value=b"x")]))
    assert m.member.state.missing  # not done until the last part
    assert refused(await m.ask(osd_pb2.PushRequest(
        pgid="1.0", oid=b"c", version=v(3, 3), last=True,
        interval=osd_pb2.Interval(epoch=3, round=1))), "older than the round")
    await m.ask(osd_pb2.PushRequest(pgid="1.0", oid=b"c", version=v(6, 3), last=True, offset=2,
                                    data=b"34", interval=R6))
    await m.ask(osd_pb2.PushRequest(pgid="1.0", oid=b"lost", remove=True, interval=R6))
    assert m.member.state.missing == {}
    assert bytes(await store.read("1.0", b"c")) == b"1234"
    assert (await store.stat("1.0", b"c")).version == v(6, 3)
    assert (await m.ask(rep(4, b"d", b"after", epoch=6, round_=(6, 1)))).applied
    inventory = await m.ask(osd_pb2.InventoryRequest(pgid="1.0", interval=R6))
    assert {(o.oid, o.need) for o in inventory.objects} == {
        (b"a", v(3, 1)), (b"b", v(3, 2)), (b"c", v(6, 3)), (b"d", v(6, 4))}
    assert pgmeta.PGMETA_OID not in {o.oid for o in inventory.objects}
    pulled = await m.ask(osd_pb2.PullRequest(pgid="1.0", oid=b"c", length=3, meta=True,
                                             interval=R6))
    assert (pulled.data, pulled.size, pulled.xattrs[0].value) == (b"123", 4, b"x")
    await m.ask(osd_pb2.PgRemove(pgid="1.0", interval=R6))
    assert not (await m.ask(osd_pb2.PgQuery(pgid="1.0"))).exists


@pytest.mark.asyncio
async def test_pipelined_writes_enter_the_log_in_order_and_a_failure_stops_the_next() -> None:
    """Writes are queued without waiting for the previous ones to be durable; one that fails
    here leaves the PG refusing writes (the one queued behind it fails too: no hole)."""
    store = MemoryStore()
    m = MemberDriver(store)
    effects = []
    for seq in range(1, 6):  # five writes asked for before any is durable
        effects += m.member.handle(100 + seq, rep(seq, b"o%d" % seq, b"x"))
    await m.run(effects)
    assert [m.answers[100 + s].applied for s in range(1, 6)] == [True] * 5
    assert [s for s, _ in await store.log_read("1.0")] == [1, 2, 3, 4, 5]
    first = m.member.handle(200, rep(6, b"big", b"x"))
    second = m.member.handle(201, rep(7, b"small", b"y"))
    more, _ = m.member.persisted(first[0].pid, "no space")  # the first fails in the store
    await m.run(more)
    try:  # the second, queued behind it, is refused by the store: the log must end at 6
        await store.submit(m.pgs.transaction("1.0", second[0]))
        raise AssertionError("a write behind a hole was taken")
    except Exception as exc:
        assert "follows 6" in str(exc)
    assert [s for s, _ in await store.log_read("1.0")] == [1, 2, 3, 4, 5]
    assert refused(await m.ask(rep(8, b"again", b"z", tid=60)), "failed here")


@pytest.mark.asyncio
async def test_recovery_bandwidth_is_limited() -> None:
    import time

    from osd.throttle import TokenBucket
    bucket = TokenBucket(rate=1 << 20)  # 1 MiB/s with a 1 s burst
    start = time.monotonic()
    for _ in range(6):
        await bucket.take(256 << 10)  # 1.5 MiB: the last half MiB waits ~0.5 s
    assert 0.4 < time.monotonic() - start < 1.5
    unlimited = TokenBucket(rate=0)
    start = time.monotonic()
    await unlimited.take(1 << 30)
    assert time.monotonic() - start < 0.1
