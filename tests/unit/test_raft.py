"""Direct tests of the Raft state machine (mon/raft.py): one node, hand-made messages."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mon.raft import (
    AppendEntries,
    AppendEntriesReply,
    Apply,
    ApplySnapshot,
    Effect,
    Entry,
    EntryKind,
    InstallSnapshot,
    InstallSnapshotReply,
    LeaderChanged,
    NotLeader,
    PersistEntries,
    PersistentState,
    PersistSnapshot,
    PersistState,
    ProposalResult,
    Propose,
    RaftConfig,
    RaftLog,
    RaftNode,
    ReadIndex,
    ReadIndexResult,
    Receive,
    RequestVote,
    RequestVoteReply,
    Role,
    Send,
    Snapshot,
    SnapshotTaken,
    Tick,
)

CONFIG = RaftConfig()
MEMBERS = ("a", "b", "c")
PERSIST = (PersistState, PersistEntries, PersistSnapshot)


def entries(*terms: int, start: int = 1) -> list[Entry]:
    """Entries with the given terms from index ``start``; the payload names index and term."""
    return [Entry(start + i, term, f"{start + i}@{term}".encode()) for i, term in enumerate(terms)]


def node(name: str = "a", members: tuple[str, ...] = MEMBERS, *, term: int = 0,
         log: list[Entry] | None = None, snapshot: Snapshot | None = None, seed: int = 0,
         **config: object) -> RaftNode:
    state = PersistentState(term=term, entries=log or [], snapshot=snapshot)
    return RaftNode(name, members, state, random.Random(seed), replace(CONFIG, **config))


def receive(n: RaftNode, message: object) -> list[Effect]:
    return check_order(n.step(Receive(message)))  # type: ignore[arg-type]


def check_order(effects: list[Effect]) -> list[Effect]:
    """The persistence contract: persist effects come before everything else."""
    kinds = [isinstance(e, PERSIST) for e in effects]
    assert kinds == sorted(kinds, reverse=True), effects
    return effects


def sent(effects: list[Effect]) -> dict[str, object]:
    return {e.to: e.message for e in effects if isinstance(e, Send)}


def of_type(effects: list[Effect], kind: type) -> list:
    return [e for e in effects if isinstance(e, kind)]


def elect(n: RaftNode) -> list[Effect]:
    """Make ``n`` leader: time out, then win the pre-vote and the vote with a majority."""
    n.step(Tick(3.0))  # later than any election timeout
    peers = [m for m in n.members if m != n.id][:len(n.members) // 2]
    for peer in peers:
        receive(n, RequestVoteReply(n.term + 1, peer, True, pre_vote=True))
    effects: list[Effect] = []
    for peer in peers:
        effects = receive(n, RequestVoteReply(n.term, peer, True))
    assert n.role is Role.LEADER
    return effects


# -- elections ------------------------------------------------------------------------------------


def test_a_follower_pre_votes_once_its_election_timeout_expires() -> None:
    n = node()
    assert n.step(Tick(0.99)) == []  # the timeout is at least election_timeout_min
    effects = n.step(Tick(2.0))  # and less than election_timeout_max
    assert n.role is Role.PRE_CANDIDATE
    assert n.term == 0 and not of_type(effects, PersistState)  # a pre-vote changes nothing
    assert sent(effects) == {p: RequestVote(1, "a", 0, 0, pre_vote=True) for p in ("b", "c")}


def test_election_timeouts_are_randomized_within_the_configured_range() -> None:
    deadlines = {node(seed=seed).next_deadline for seed in range(20)}
    assert len(deadlines) == 20
    assert all(1.0 <= d < 2.0 for d in deadlines)


def test_winning_the_pre_vote_starts_an_election_whose_vote_is_persisted_first() -> None:
    n = node(term=4)
    n.step(Tick(3.0))
    effects = receive(n, RequestVoteReply(5, "b", True, pre_vote=True))
    assert n.role is Role.CANDIDATE and n.term == 5 and n.voted_for == "a"
    assert effects[0] == PersistState(5, "a")
    assert sent(effects) == {p: RequestVote(5, "a", 0, 0) for p in ("b", "c")}


def test_a_candidate_with_a_majority_leads_and_appends_a_no_op() -> None:
    n = node(term=1, log=entries(1))
    effects = elect(n)
    assert n.role is Role.LEADER and n.term == 2
    noop = Entry(2, 2, b"", b"", EntryKind.NOOP)
    assert effects[0] == PersistEntries(2, (noop,))
    assert sent(effects) == {p: AppendEntries(2, "a", 1, 1, (noop,), 0, 0) for p in ("b", "c")}
    assert effects[-1] == LeaderChanged("a", 2)


def test_votes_from_older_terms_or_rejections_do_not_count() -> None:
    n = node(term=4)
    n.step(Tick(3.0))
    receive(n, RequestVoteReply(4, "b", False, pre_vote=True))  # refused
    receive(n, RequestVoteReply(4, "c", True, pre_vote=True))  # granted, but not for term 5
    assert n.role is Role.PRE_CANDIDATE


def test_a_node_votes_once_per_term_and_persists_the_vote_before_answering() -> None:
    n = node("b")
    effects = receive(n, RequestVote(1, "a", 0, 0))
    assert effects[0] == PersistState(1, "a")
    assert sent(effects) == {"a": RequestVoteReply(1, "b", True)}
    assert sent(receive(n, RequestVote(1, "c", 0, 0))) == {"c": RequestVoteReply(1, "b", False)}
    assert sent(receive(n, RequestVote(1, "a", 0, 0))) == {"a": RequestVoteReply(1, "b", True)}


@pytest.mark.parametrize(("last_index", "last_term", "granted"), [
    (5, 1, False),  # an older last term loses, however long the log
    (1, 2, False),  # same last term, shorter log
    (2, 2, True),  # same log
    (1, 3, True),  # a newer last term wins, however short the log
])
def test_votes_go_only_to_candidates_whose_log_is_at_least_as_up_to_date(
        last_index: int, last_term: int, granted: bool) -> None:
    n = node("b", term=2, log=entries(1, 2))
    reply = sent(receive(n, RequestVote(3, "a", last_index, last_term)))["a"]
    assert reply == RequestVoteReply(3, "b", granted)
    reply = sent(receive(n, RequestVote(4, "c", last_index, last_term, pre_vote=True)))["c"]
    assert reply == RequestVoteReply(4 if granted else 3, "b", granted, pre_vote=True)


def test_a_pre_vote_request_changes_neither_term_nor_vote() -> None:
    n = node("b", term=2)
    effects = receive(n, RequestVote(3, "a", 0, 0, pre_vote=True))
    assert sent(effects) == {"a": RequestVoteReply(3, "b", True, pre_vote=True)}
    assert (n.term, n.voted_for) == (2, None) and not of_type(effects, PersistState)


def test_vote_requests_are_ignored_while_the_leader_is_fresh() -> None:
    n = node("b", term=1)
    n.step(Tick(10.0))
    receive(n, AppendEntries(1, "a", 0, 0, (), 0, 0))
    n.step(Tick(10.9))
    assert receive(n, RequestVote(2, "c", 0, 0)) == []
    assert receive(n, RequestVote(2, "c", 0, 0, pre_vote=True)) == []
    assert n.term == 1
    n.step(Tick(11.0))  # election_timeout_min after the leader's last message
    assert sent(receive(n, RequestVote(2, "c", 0, 0)))["c"] == RequestVoteReply(2, "b", True)


def test_a_higher_term_deposes_a_leader() -> None:
    n = node()
    elect(n)
    effects = receive(n, AppendEntriesReply(7, "b", False, 0, 0))
    assert n.role is Role.FOLLOWER and (n.term, n.voted_for) == (7, None)
    assert effects == [PersistState(7, None), LeaderChanged(None, 7)]


def test_a_stale_leader_is_told_the_current_term() -> None:
    n = node("b", term=3)
    reply = sent(receive(n, AppendEntries(2, "a", 0, 0, (), 0, 9)))["a"]
    assert reply == AppendEntriesReply(3, "b", False, 0, 9)
    assert n.term == 3


def test_a_leader_without_a_majority_steps_down_after_an_election_timeout() -> None:
    n = node(members=("a", "b", "c", "d", "e"))
    elect(n)
    leader_since = 3.0
    receive(n, AppendEntriesReply(n.term, "b", True, 0, 0))  # only b answers: 2 of 5
    n.step(Tick(leader_since + 0.99))
    assert n.role is Role.LEADER
    effects = n.step(Tick(leader_since + 1.0))
    assert n.role is Role.FOLLOWER and LeaderChanged(None, n.term) in effects


def test_a_leader_with_a_majority_stays() -> None:
    n = node()
    elect(n)
    for at in (3.5, 4.5, 5.5):
        receive(n, AppendEntriesReply(n.term, "b", True, 0, 0))
        n.step(Tick(at))
    assert n.role is Role.LEADER


# -- replication: follower side -----------------------------------------------------------------


def test_a_follower_persists_new_entries_before_acknowledging_them() -> None:
    n = node("b", term=1)
    new = tuple(entries(1, 1))
    effects = receive(n, AppendEntries(1, "a", 0, 0, new, 0, 0))
    assert effects[0] == PersistEntries(1, new)
    assert sent(effects) == {"a": AppendEntriesReply(1, "b", True, 2, 0)}
    assert effects[-1] == LeaderChanged("a", 1)


def test_a_follower_missing_the_previous_entry_says_where_its_log_ends() -> None:
    n = node("b", term=1, log=entries(1, 1))
    reply = sent(receive(n, AppendEntries(1, "a", 5, 1, (), 0, 0)))["a"]
    assert reply == AppendEntriesReply(1, "b", False, 5, 0, conflict_index=3, conflict_term=0)


def test_a_follower_with_a_conflicting_entry_names_its_term_and_where_that_term_starts() -> None:
    n = node("b", term=3, log=entries(1, 2, 2, 2))
    reply = sent(receive(n, AppendEntries(3, "a", 4, 3, (), 0, 0)))["a"]
    assert reply == AppendEntriesReply(3, "b", False, 4, 0, conflict_index=2, conflict_term=2)


def test_a_follower_replaces_a_dead_leaders_suffix() -> None:
    n = node("b", term=2, log=entries(1, 1, 2, 2))
    new = Entry(3, 3, b"new")
    effects = receive(n, AppendEntries(3, "a", 2, 1, (new,), 3, 0))
    assert [(e.index, e.term) for e in (n.log.entry(i) for i in (1, 2, 3))] == [(1, 1), (2, 1),
                                                                               (3, 3)]
    assert n.log.last_index == 3
    assert effects[0] == PersistState(3, None)
    assert effects[1] == PersistEntries(3, (new,))
    assert of_type(effects, Apply) == [Apply((*entries(1, 1), new))]


def test_a_duplicated_or_reordered_append_does_not_truncate() -> None:
    n = node("b", term=1, log=entries(1, 1, 1))
    effects = receive(n, AppendEntries(1, "a", 1, 1, (entries(1, start=2)[0],), 0, 0))
    assert n.log.last_index == 3 and not of_type(effects, PersistEntries)
    assert sent(effects)["a"] == AppendEntriesReply(1, "b", True, 2, 0)


def test_a_follower_commits_no_further_than_the_entries_it_verified() -> None:
    n = node("b", term=2, log=entries(1, 2, 2))  # 2 and 3 may be a dead leader's
    effects = receive(n, AppendEntries(3, "a", 1, 1, (), 3, 0))
    assert n.commit_index == 1
    assert of_type(effects, Apply) == [Apply(tuple(entries(1)))]


def test_an_append_below_the_commit_index_is_acknowledged_up_to_it() -> None:
    n = node("b", term=1, log=entries(1, 1, 1))
    receive(n, AppendEntries(1, "a", 3, 1, (), 3, 0))
    reply = sent(receive(n, AppendEntries(1, "a", 1, 1, (), 3, 0)))["a"]
    assert reply == AppendEntriesReply(1, "b", True, 3, 0)


# -- replication: leader side -------------------------------------------------------------------


def test_the_leader_retries_past_its_own_entries_of_the_conflicting_term() -> None:
    n = node(term=3, log=entries(1, 2, 2, 3))
    elect(n)  # term 4, no-op at 5
    effects = receive(n, AppendEntriesReply(4, "b", False, 4, 0, conflict_index=2,
                                            conflict_term=2))
    assert sent(effects)["b"].prev_index == 3  # after our last term-2 entry


def test_the_leader_retries_at_the_followers_run_when_it_lacks_that_term() -> None:
    n = node(term=3, log=entries(1, 3, 3, 3))
    elect(n)
    effects = receive(n, AppendEntriesReply(4, "b", False, 4, 0, conflict_index=2,
                                            conflict_term=2))
    assert sent(effects)["b"].prev_index == 1


def test_stale_rejections_are_ignored() -> None:
    n = node(term=3, log=entries(1, 3, 3, 3))
    elect(n)
    receive(n, AppendEntriesReply(4, "b", False, 4, 0, conflict_index=2, conflict_term=2))
    effects = receive(n, AppendEntriesReply(4, "b", False, 4, 0, conflict_index=2,
                                            conflict_term=2))
    assert sent(effects) == {}


def test_the_leader_commits_only_entries_of_its_own_term_by_counting_replicas() -> None:
    n = node(term=2, log=entries(1, 2))  # index 2 from our earlier term
    elect(n)  # term 3, no-op at 3
    effects = receive(n, AppendEntriesReply(3, "b", True, 2, 0))
    assert n.commit_index == 0 and not of_type(effects, Apply)
    # A majority holds index 2, but it is from term 2: counting replicas proves nothing for an
    # older term's entry (figure 8 of the Raft paper). Our own entry's replicas do.
    effects = receive(n, AppendEntriesReply(3, "b", True, 3, 0))
    assert n.commit_index == 3
    assert of_type(effects, Apply)[0].entries[-1].index == 3


def test_a_proposal_to_a_follower_is_refused_with_a_leader_hint() -> None:
    n = node("b", term=1)
    receive(n, AppendEntries(1, "c", 0, 0, (), 0, 0))
    assert n.step(Propose(b"x", b"r1")) == [ProposalResult(b"r1", None, None, NotLeader("c"))]
    assert n.step(ReadIndex(b"r2")) == [ReadIndexResult(b"r2", None, NotLeader("c"))]


def test_a_proposal_to_the_leader_is_appended_persisted_and_replicated() -> None:
    n = node()
    elect(n)
    effects = check_order(n.step(Propose(b"x", b"r1")))
    entry = Entry(2, 1, b"x", b"r1")
    assert effects[0] == PersistEntries(2, (entry,))
    assert effects[1] == ProposalResult(b"r1", 2, 1)
    assert sent(effects)["b"].entries[-1] == entry


def test_a_single_member_cluster_leads_at_once_and_commits_alone() -> None:
    n = node(members=("a",))
    effects = n.step(Tick(0.0))
    assert n.role is Role.LEADER and n.commit_index == 1
    assert effects[-1] == LeaderChanged("a", 1)
    effects = check_order(n.step(Propose(b"x", b"r1")))
    assert of_type(effects, Apply) == [Apply((Entry(2, 1, b"x", b"r1"),))]
    assert n.step(ReadIndex(b"q")) == [ReadIndexResult(b"q", 2)]


# -- reads ----------------------------------------------------------------------------------------


def test_a_read_waits_for_a_commit_in_this_term_and_a_heartbeat_round() -> None:
    n = node()
    elect(n)
    assert n.step(ReadIndex(b"q")) == []  # nothing committed in this term yet
    effects = receive(n, AppendEntriesReply(1, "b", True, 1, 0))  # commits the no-op
    assert {m.read_seq for m in sent(effects).values()} == {1}  # the read's round starts
    assert not of_type(effects, ReadIndexResult)
    assert receive(n, AppendEntriesReply(1, "c", True, 1, 0)) == []  # not an answer to round 1
    effects = receive(n, AppendEntriesReply(1, "c", True, 1, 1))
    assert effects == [ReadIndexResult(b"q", 1)]


def test_pending_reads_fail_when_the_leader_steps_down() -> None:
    n = node()
    elect(n)
    receive(n, AppendEntriesReply(1, "b", True, 1, 0))
    n.step(ReadIndex(b"q"))
    effects = receive(n, AppendEntries(2, "c", 1, 1, (), 1, 0))
    assert ReadIndexResult(b"q", None, NotLeader(None)) in effects


# -- compaction -----------------------------------------------------------------------------------


def test_compaction_persists_the_snapshot_and_lagging_followers_get_it() -> None:
    n = node()
    elect(n)
    n.step(Propose(b"x", b"r1"))
    receive(n, AppendEntriesReply(1, "b", True, 2, 0))  # commits 1..2; c never answered
    effects = n.step(SnapshotTaken(2, b"state"))
    snapshot = Snapshot(2, 1, MEMBERS, b"state")
    assert effects == [PersistSnapshot(snapshot, discard_log=False)]
    assert n.log.snapshot == snapshot and n.log.last_index == 2
    receive(n, AppendEntriesReply(1, "c", False, 2, 0, conflict_index=1))
    effects = n.step(Tick(3.1))  # heartbeat
    assert sent(effects)["c"] == InstallSnapshot(1, "a", snapshot)
    assert "c" not in sent(n.step(Tick(3.2)))  # not resent before snapshot_retry_interval
    receive(n, InstallSnapshotReply(1, "c", 2))
    assert isinstance(sent(n.step(Tick(3.4)))["c"], AppendEntries)


def test_snapshots_past_the_applied_index_are_refused() -> None:
    n = node(members=("a",))
    n.step(Tick(0.0))
    with pytest.raises(ValueError, match="applied"):
        n.step(SnapshotTaken(5, b""))


def test_an_installed_snapshot_replaces_a_conflicting_log() -> None:
    n = node("b", term=2, log=entries(1, 1, 2))
    snapshot = Snapshot(3, 3, MEMBERS, b"state")
    effects = receive(n, InstallSnapshot(3, "a", snapshot))
    assert effects[1] == PersistSnapshot(snapshot, discard_log=True)
    assert ApplySnapshot(snapshot) in effects
    assert sent(effects)["a"] == InstallSnapshotReply(3, "b", 3)
    assert (n.commit_index, n.last_applied, n.log.last_index) == (3, 3, 3)


def test_an_installed_snapshot_keeps_a_log_that_continues_it() -> None:
    n = node("b", term=1, log=entries(1, 1, 1, 1))
    snapshot = Snapshot(2, 1, MEMBERS, b"state")
    effects = receive(n, InstallSnapshot(1, "a", snapshot))
    assert effects[0] == PersistSnapshot(snapshot, discard_log=False)
    assert n.log.last_index == 4 and n.log.entry(3) == entries(1, start=3)[0]


# -- persistence and restart ----------------------------------------------------------------------


def test_a_node_rebuilt_from_its_persisted_state_remembers_term_vote_and_log() -> None:
    n = node(members=("a",))
    disk = PersistentState()
    for event in (Tick(0.0), Propose(b"x", b"r1"), Propose(b"y", b"r2")):
        for effect in n.step(event):
            if isinstance(effect, PERSIST):
                disk.apply(effect)
    for effect in n.step(SnapshotTaken(2, b"state")):
        disk.apply(effect)  # type: ignore[arg-type]
    again = RaftNode("a", ("a",), disk.copy(), random.Random(0), CONFIG)
    assert (again.term, again.voted_for) == (1, "a")
    assert again.log.snapshot.index == 2 and again.log.entry(3) == Entry(3, 1, b"y", b"r2")
    assert (again.commit_index, again.last_applied) == (2, 2)  # the snapshot is applied
    resumed = RaftNode("a", ("a",), disk.copy(), random.Random(0), CONFIG, applied_index=3)
    assert resumed.last_applied == 3
    with pytest.raises(ValueError, match="past the log"):
        RaftNode("a", ("a",), disk.copy(), random.Random(0), CONFIG, applied_index=4)


def test_persistent_state_applies_persist_effects() -> None:
    state = PersistentState()
    state.apply(PersistEntries(1, tuple(entries(1, 1, 2))))
    state.apply(PersistEntries(3, tuple(entries(3, start=3))))  # truncate 3, append
    assert [e.term for e in state.entries] == [1, 1, 3]
    state.apply(PersistSnapshot(Snapshot(2, 1, MEMBERS, b""), discard_log=False))
    assert [e.index for e in state.entries] == [3]
    state.apply(PersistSnapshot(Snapshot(2, 1, MEMBERS, b""), discard_log=True))
    assert state.entries == []
    with pytest.raises(ValueError):
        state.apply(PersistEntries(5, ()))  # would leave a gap


def test_config_rejects_timers_that_cannot_work() -> None:
    with pytest.raises(ValueError):
        RaftConfig(heartbeat_interval=1.0, election_timeout_min=1.0)
    with pytest.raises(ValueError):
        RaftConfig(election_timeout_min=2.0, election_timeout_max=1.0)


# -- the log --------------------------------------------------------------------------------------


def test_the_log_answers_about_entries_it_does_not_hold() -> None:
    log = RaftLog(Snapshot(2, 1, MEMBERS, b""), entries(1, 2, 2, start=3))
    assert log.matches(2, 1) and not log.matches(1, 1) and not log.matches(9, 2)
    assert log.entry(2) is None and log.entry(6) is None and log.term(2) == 1
    with pytest.raises(IndexError):
        log.term(1)
    assert log.first_index_of_term_run(5) == 4
    assert log.last_index_of_term(2, at_most=5) == 5
    assert log.last_index_of_term(1, at_most=5) == 3
    assert log.last_index_of_term(7, at_most=5) is None


# -- any sequence of messages -------------------------------------------------------------------

MESSAGES = st.one_of(
    st.builds(AppendEntries, term=st.integers(0, 4), sender=st.sampled_from(["b", "c"]),
              prev_index=st.integers(0, 4), prev_term=st.integers(0, 4),
              entries=st.lists(st.integers(1, 4), max_size=3), leader_commit=st.integers(0, 6),
              read_seq=st.just(0)),
    st.builds(RequestVote, term=st.integers(0, 5), sender=st.sampled_from(["b", "c"]),
              last_log_index=st.integers(0, 6), last_log_term=st.integers(0, 4),
              pre_vote=st.booleans()),
    st.builds(RequestVoteReply, term=st.integers(0, 5), sender=st.sampled_from(["b", "c"]),
              granted=st.booleans(), pre_vote=st.booleans()),
    st.builds(AppendEntriesReply, term=st.integers(0, 5), sender=st.sampled_from(["b", "c"]),
              success=st.booleans(), index=st.integers(0, 6), read_seq=st.integers(0, 2),
              conflict_index=st.integers(1, 6), conflict_term=st.integers(0, 4)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(MESSAGES, st.floats(0.0, 1.0)), max_size=30))
def test_any_message_sequence_keeps_persistence_first_and_disk_in_step(
        inputs: list[object]) -> None:
    """Arbitrary (even inconsistent) messages never crash the node; its persist effects always
    come first and always describe its state completely."""
    n, disk, now = node(), PersistentState(), 0.0
    for item in inputs:
        if isinstance(item, float):
            now += item * 2
            effects = n.step(Tick(now))
        else:
            if isinstance(item, AppendEntries):  # a leader's log: terms grow, up to its own
                prev_term = min(item.prev_term, item.term)
                run = tuple(Entry(item.prev_index + 1 + i, min(max(t, prev_term), item.term), b"")
                            for i, t in enumerate(sorted(item.entries)))
                item = replace(item, prev_term=prev_term, entries=run)
            elif isinstance(item, AppendEntriesReply) and item.success:  # acks what we sent
                item = replace(item, index=min(item.index, n.log.last_index))
            try:
                effects = n.step(Receive(item))  # type: ignore[arg-type]
            except AssertionError:
                assert isinstance(item, AppendEntries) and n.role is Role.LEADER
                return  # two leaders in one term: the inputs broke Raft, and the node said so
        for effect in check_order(effects):
            if isinstance(effect, PERSIST):
                disk.apply(effect)
        assert (disk.term, disk.voted_for) == (n.term, n.voted_for)
        assert [(e.index, e.term) for e in disk.entries] == [
            (i, n.log.term(i)) for i in range(n.log.snapshot.index + 1, n.log.last_index + 1)]
