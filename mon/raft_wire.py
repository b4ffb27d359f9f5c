"""Raft messages (mon/raft_messages.py) <-> protobuf (proto/loligo/raft.proto)."""

from __future__ import annotations

from mon.raft_log import Entry, EntryKind, Snapshot
from mon.raft_messages import (
    AppendEntries,
    AppendEntriesReply,
    InstallSnapshot,
    InstallSnapshotReply,
    Message,
    RequestVote,
    RequestVoteReply,
)
from rados_py.errors import InvalidArgument
from rados_py.proto.loligo import raft_pb2


def entry_to_proto(e: Entry) -> raft_pb2.RaftEntry:
    return raft_pb2.RaftEntry(index=e.index, term=e.term, payload=e.payload,
                              request_id=e.request_id, noop=e.kind is EntryKind.NOOP)


def entry_from_proto(p: raft_pb2.RaftEntry) -> Entry:
    return Entry(p.index, p.term, p.payload, p.request_id,
                 EntryKind.NOOP if p.noop else EntryKind.COMMAND)


def snapshot_to_proto(s: Snapshot) -> raft_pb2.RaftSnapshot:
    return raft_pb2.RaftSnapshot(index=s.index, term=s.term, members=list(s.members), data=s.data)


def snapshot_from_proto(p: raft_pb2.RaftSnapshot) -> Snapshot:
    return Snapshot(p.index, p.term, tuple(p.members), p.data)


def to_proto(msg: Message, fsid: str) -> raft_pb2.RaftMessage:
    out = raft_pb2.RaftMessage(fsid=fsid, term=msg.term, sender=msg.sender)
    match msg:
        case RequestVote():
            out.request_vote.CopyFrom(raft_pb2.RequestVote(
                last_log_index=msg.last_log_index, last_log_term=msg.last_log_term,
                pre_vote=msg.pre_vote))
        case RequestVoteReply():
            out.request_vote_reply.CopyFrom(raft_pb2.RequestVoteReply(
                granted=msg.granted, pre_vote=msg.pre_vote))
        case AppendEntries():
            out.append_entries.CopyFrom(raft_pb2.AppendEntries(
                prev_index=msg.prev_index, prev_term=msg.prev_term,
                entries=[entry_to_proto(e) for e in msg.entries],
                leader_commit=msg.leader_commit, read_seq=msg.read_seq))
        case AppendEntriesReply():
            out.append_entries_reply.CopyFrom(raft_pb2.AppendEntriesReply(
                success=msg.success, index=msg.index, read_seq=msg.read_seq,
                conflict_index=msg.conflict_index, conflict_term=msg.conflict_term))
        case InstallSnapshot():
            out.install_snapshot.CopyFrom(raft_pb2.InstallSnapshot(
                snapshot=snapshot_to_proto(msg.snapshot)))
        case InstallSnapshotReply():
            out.install_snapshot_reply.CopyFrom(raft_pb2.InstallSnapshotReply(index=msg.index))
    return out


def from_proto(p: raft_pb2.RaftMessage) -> Message:
    kind = p.WhichOneof("body")
    term, sender = p.term, p.sender
    if kind == "request_vote":
        b = p.request_vote
        return RequestVote(term, sender, b.last_log_index, b.last_log_term, b.pre_vote)
    if kind == "request_vote_reply":
        return RequestVoteReply(term, sender, p.request_vote_reply.granted,
                                p.request_vote_reply.pre_vote)
    if kind == "append_entries":
        b = p.append_entries
        return AppendEntries(term, sender, b.prev_index, b.prev_term,
                             tuple(entry_from_proto(e) for e in b.entries), b.leader_commit,
                             b.read_seq)
    if kind == "append_entries_reply":
        b = p.append_entries_reply
        return AppendEntriesReply(term, sender, b.success, b.index, b.read_seq, b.conflict_index,
                                  b.conflict_term)
    if kind == "install_snapshot":
        return InstallSnapshot(term, sender, snapshot_from_proto(p.install_snapshot.snapshot))
    if kind == "install_snapshot_reply":
        return InstallSnapshotReply(term, sender, p.install_snapshot_reply.index)
    raise InvalidArgument("raft message without a body")
