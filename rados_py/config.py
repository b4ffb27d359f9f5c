"""Loligo configuration: one typed schema, read from a TOML file laid out like ceph.conf.

Every option is declared once in `SCHEMA` (type, default, bounds, help, daemons using it), so the
loader, the error messages, `loligo config help` and the launcher's file writer cannot disagree.
A file has sections, later ones winning for the daemon being configured:

    [global]            every daemon and client
    [mon] [osd] ...     one daemon type (mon, osd, mds, gateway, client)
    [mon.a] [osd.3]     one daemon, e.g. a port or a shorter timer for a test

then `LOLIGO_<NAME>` environment variables override the file (`LOLIGO_RPC_TIMEOUT=2s`).
Relative paths are relative to the directory of the config file. Any mistake -- an unknown
option, a wrong type, a value out of range -- is refused with one line naming the file,
section and option: a daemon must never start on a silently ignored setting.
Tests shrink timers through this configuration (`Config.defaults(rpc_timeout=0.5)`), never by
patching constants.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from rados_py.errors import InvalidArgument

__all__ = ["DEFAULT_CONF", "SCHEMA", "Config", "ConfigError", "MonAddr", "Option",
           "describe", "find_conf", "load", "option", "parse_duration", "parse_size"]

DaemonType = Literal["mon", "osd", "mds", "gateway", "mgr", "client"]
DAEMON_TYPES: tuple[DaemonType, ...] = ("mon", "osd", "mds", "gateway", "mgr", "client")
#: Where `loligo cluster up` puts the local cluster, and so where everything looks by default.
DEFAULT_CONF = Path("~/.local/share/loligo/cluster/loligo.toml")
ENV_CONF = "LOLIGO_CONF"
ENV_PREFIX = "LOLIGO_"


class ConfigError(InvalidArgument):
    """A configuration that cannot be used; the message names file, section and option."""


class MonAddr(NamedTuple):
    """One monitor of mon_host: `a=127.0.0.1:6789` (IPv6 hosts in brackets)."""

    name: str
    host: str
    port: int

    @property
    def addr(self) -> str:
        """host:port as gRPC wants it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.name}={self.addr}"


_DURATION_RE = re.compile(r"((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(ms|s|m|h)?")
_DURATION_UNIT = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0}
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?", re.IGNORECASE)
_MON_RE = re.compile(r"([A-Za-z0-9_-]+)=(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})")
_TOML_TYPE = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
              dict: "table"}


def _show(value: Any) -> str:
    return f"{_TOML_TYPE.get(type(value), type(value).__name__)} {value!r}"


def parse_duration(text: str) -> float:
    """Seconds from `1.5`, `500ms`, `2s`, `3m` or `1h`: timers are seconds everywhere."""
    match = _DURATION_RE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"expected a duration such as 1.5, 500ms, 2s, 3m or 1h, got {text!r}")
    return float(match[1]) * _DURATION_UNIT[match[2]]


def parse_size(text: str) -> int:
    """Bytes from `4096`, `64KiB`, `16M` or `1.5GiB` (K, M, G, T are powers of 1024)."""
    match = _SIZE_RE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"expected a size such as 4096, 64KiB or 16MiB, got {text!r}")
    value = float(match[1]) * 1024 ** " KMGT".index(match[2].upper() or " ")
    if not value.is_integer():
        raise ValueError(f"{text!r} is not a whole number of bytes")
    return int(value)


def _number(value: Any, integral: bool) -> float | int:
    ok = int if integral else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok):
        raise ValueError(f"expected {'an integer' if integral else 'a number'}, got "
                         f"{_show(value)}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return value if integral else float(value)


def _typed(cls: type, expected: str) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if not isinstance(value, cls):
            raise ValueError(f"expected {expected}, got {_show(value)}")
        return value
    return parse


_string = _typed(str, "a string")


def _text_number(integral: bool) -> Callable[[str], float | int]:
    def parse(text: str) -> float | int:
        try:
            return _number((int if integral else float)(text.strip()), integral)
        except ValueError:
            what = "an integer" if integral else "a finite number"
            raise ValueError(f"expected {what}, got {text!r}") from None
    return parse


def _bool_text(text: str) -> bool:
    word = text.strip().lower()
    if word not in ("true", "false", "yes", "no", "on", "off", "1", "0"):
        raise ValueError(f"expected true or false, got {text!r}")
    return word in ("true", "yes", "on", "1")


def _uuid(value: Any) -> str:
    text = _string(value).strip()
    try:
        return str(uuid.UUID(text)) if text else ""
    except ValueError:
        raise ValueError(f"expected a UUID such as {uuid.UUID(int=0)}, got {value!r}") from None


def _path(value: Any) -> Path:
    if not _string(value).strip():
        raise ValueError("expected a path, got an empty string")
    return Path(value)


def _addrs(value: Any) -> tuple[MonAddr, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError(f"expected a list of name=host:port, got {_show(value)}")
    out = []
    for item in items:
        match = _MON_RE.fullmatch(str(item).strip()) if isinstance(item, str | MonAddr) else None
        if not match or not 0 < int(match[3]) < 65536:
            raise ValueError(f"expected name=host:port such as a=127.0.0.1:6789, got {item!r}")
        out.append(MonAddr(match[1], match[2].strip("[]"), int(match[3])))
    return tuple(out)


@dataclass(frozen=True)
class _Kind:
    parse: Callable[[Any], Any]  # a TOML value: strict about types
    parse_text: Callable[[str], Any]  # an environment variable: always text
    to_toml: Callable[[Any], Any] = lambda v: v


KINDS: Mapping[str, _Kind] = MappingProxyType({
    "int": _Kind(lambda v: _number(v, True), _text_number(True)),
    "float": _Kind(lambda v: _number(v, False), _text_number(False)),
    "bool": _Kind(_typed(bool, "true or false"), _bool_text),
    "str": _Kind(_string, str),
    "uuid": _Kind(_uuid, _uuid),
    "duration": _Kind(lambda v: parse_duration(v) if isinstance(v, str) else _number(v, False),
                      parse_duration),
    "size": _Kind(lambda v: parse_size(v) if isinstance(v, str) else _number(v, True),
                  parse_size),
    "path": _Kind(_path, _path, str),
    "addrs": _Kind(_addrs, _addrs, lambda v: v if isinstance(v, str) else [str(m) for m in v]),
})


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value).replace("\x7f", "\\u007f")
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


def format_toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """Write checked sections ({"global": {...}, "mon.a": {...}}) as a config file.

    For the launcher: every value is checked against the schema first, and every option gets
    its help as a comment, so the file it writes loads and explains itself.
    """
    out = []
    for section, values in sections.items():
        if section != "global":
            _check_entity(section, "format_toml")
        out.append(f"[{section}]")
        for name, value in values.items():
            opt = _option(name, f"format_toml [{section}]")
            try:
                checked = opt.parse(KINDS[opt.kind].to_toml(value))
            except ValueError as exc:
                raise ConfigError(f"format_toml [{section}] {name}: {exc}") from None
            out.append(f"# {opt.help}")
            out.append(f"{name} = {_toml_value(KINDS[opt.kind].to_toml(checked))}")
        out.append("")
    return "\n".join(out)


@dataclass(frozen=True)
class Option:
    """One setting: what it is, its bounds, and who reads it (for help and for dump_toml)."""

    name: str
    kind: str
    default: Any
    help: str
    daemons: tuple[DaemonType, ...]
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()

    def parse(self, value: Any, *, from_env: bool = False) -> Any:
        """Turn a TOML value (or an environment string) into a checked value, or ValueError."""
        kind = KINDS[self.kind]
        parsed = kind.parse_text(value) if from_env else kind.parse(value)
        if self.choices:
            # case-insensitive ("info" or "INFO"), answered in the schema's own spelling
            canonical = {c.lower(): c for c in self.choices}.get(str(parsed).lower())
            if canonical is None:
                raise ValueError(f"expected one of {', '.join(self.choices)}, got {value!r}")
            parsed = canonical
        if self.min is not None and parsed < self.min:
            raise ValueError(f"{value!r} is below the minimum {_num(self.min)}")
        if self.max is not None and parsed > self.max:
            raise ValueError(f"{value!r} is above the maximum {_num(self.max)}")
        return parsed


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


_ALL: tuple[DaemonType, ...] = DAEMON_TYPES
_SERVERS: tuple[DaemonType, ...] = ("mon", "osd", "mds", "gateway", "mgr")
_MIB = 1 << 20

SCHEMA: Mapping[str, Option] = MappingProxyType({o.name: o for o in (
    Option("fsid", "uuid", "", "Cluster id (a UUID). Every request carries it and daemons refuse "
           "requests from another cluster; `loligo cluster up` generates it.", _ALL),
    Option("mon_host", "addrs", (), "Monitors as name=host:port, e.g. [\"a=127.0.0.1:6789\"]; "
           "how daemons and clients find the cluster.", _ALL),
    Option("keyring", "path", "keyring", "Keyring file (TOML, mode 0600) holding this entity's "
           "key (and, on daemons, the service secret under [\"mon.\"]).", _ALL),
    Option("data_dir", "path", "data", "Root of daemon state; each daemon keeps its own in "
           "<data_dir>/<type>.<id>.", ("mon", "osd", "mds")),
    Option("log_dir", "path", "log", "One log file per daemon: <log_dir>/<type>.<id>.log.",
           _SERVERS),
    Option("run_dir", "path", "run", "Pid files and other run-time files of the daemons.",
           _SERVERS),
    Option("log_level", "str", "INFO", "Least severe log level written.", _ALL,
           choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    Option("metrics_port_offset", "int", 1000, "A daemon serves Prometheus metrics on its RPC "
           "port + this offset; 0 turns the endpoint off.", _SERVERS, min=0, max=65535),
    Option("rpc_timeout", "duration", 10.0, "Default deadline of one RPC, retries included.",
           _ALL, min=0.001, max=3600),
    Option("rpc_max_message_size", "size", 96 * _MIB, "Largest gRPC message sent or accepted "
           "(so a write of up to this less 64 KiB is one atomic op, like Ceph's 90 MB "
           "osd_max_write_size); "
           "bigger payloads must be chunked.", _ALL, min=1024, max=2**31 - 1),
    Option("rpc_retry_initial", "duration", 0.05, "First pause before retrying an idempotent "
           "RPC that found the peer unavailable; also the first reconnect backoff.", _ALL,
           min=0.001, max=60),
    Option("rpc_retry_backoff", "float", 2.0, "Factor by which the retry pause grows.", _ALL,
           min=1.0, max=10.0),
    Option("rpc_retry_max", "duration", 2.0, "Longest pause between two attempts (and longest "
           "reconnect backoff).", _ALL, min=0.001, max=300),
    Option("rpc_retry_attempts", "int", 5, "Attempts of an idempotent RPC before giving up.",
           _ALL, min=1, max=1000),
    Option("rpc_keepalive_interval", "duration", 10.0, "HTTP/2 keepalive ping interval; finds "
           "dead peers on idle connections.", _ALL, min=1.0, max=3600),
    Option("rpc_keepalive_timeout", "duration", 5.0, "A connection whose keepalive ping gets no "
           "answer within this time is closed.", _ALL, min=0.1, max=600),
    Option("rpc_stop_grace", "duration", 5.0, "On shutdown, how long running RPCs may finish "
           "before they are cancelled.", _SERVERS, min=0, max=600),
    Option("ticket_ttl", "duration", 600.0, "Lifetime of an auth ticket; clients renew before "
           "expiry. Shorter limits how long a stolen ticket is useful.", _ALL,
           min=1, max=30 * 86400),
    Option("auth_proof_window", "duration", 30.0, "How far an identity proof's clock may be "
           "from the monitor's; also how long used nonces are remembered.", ("mon",),
           min=1, max=3600),
    Option("mon_election_timeout_min", "duration", 1.0, "Shortest wait without a leader "
           "heartbeat before a monitor calls an election (randomised up to the max).", ("mon",),
           min=0.01, max=60),
    Option("mon_election_timeout_max", "duration", 2.0, "Longest such wait.", ("mon",),
           min=0.01, max=120),
    Option("mon_heartbeat_interval", "duration", 0.25, "Leader heartbeat interval; must be "
           "well below mon_election_timeout_min.", ("mon",), min=0.001, max=30),
    Option("mon_osd_down_out_interval", "duration", 60.0, "An OSD down this long is marked out "
           "and its data re-replicated; 0 never marks out automatically.", ("mon",),
           min=0, max=7 * 86400),
    Option("mon_osd_report_grace", "duration", 6.0, "An OSD that sends no beacon for this "
           "long is marked down.", ("mon",), min=0.01, max=3600),
    Option("osd_beacon_interval", "duration", 1.0, "How often an OSD tells the monitors it is "
           "alive.", ("osd", "mon"), min=0.01, max=600),
    Option("osd_heartbeat_interval", "duration", 0.5, "How often an OSD pings its peers.",
           ("osd", "mon"), min=0.01, max=60),
    Option("osd_heartbeat_grace", "duration", 3.0, "Peers unanswered this long are reported "
           "to the monitors as failed.", ("osd", "mon"), min=0.02, max=600),
    Option("mon_osd_min_down_reporters", "int", 2, "Distinct OSDs that must report a peer "
           "failed before the monitors mark it down (fewer when fewer OSDs are up).", ("mon",),
           min=1, max=100),
    Option("osd_recovery_max_active", "int", 4, "Objects one OSD recovers or backfills at "
           "the same time (as primary).", ("osd",), min=1, max=1000),
    Option("osd_recovery_max_bytes_per_sec", "size", 0, "Bandwidth limit of one OSD's "
           "recovery and backfill as primary; 0: no limit.", ("osd",), min=0, max=1 << 40),
    Option("osd_recovery_chunk_size", "size", 8 * _MIB, "Recovery copies an object in parts "
           "of this size.", ("osd",), min=4096, max=1 << 30),
    Option("osd_scrub_interval", "duration", 86400.0, "Each PG is scrubbed (object lists, "
           "sizes, versions, attrs compared across replicas) this often; 0: never on its own.",
           ("osd",), min=0, max=365 * 86400),
    Option("osd_deep_scrub_interval", "duration", 7 * 86400.0, "Each PG is deep-scrubbed "
           "(all data read and compared) this often; 0: never on its own.", ("osd",), min=0,
           max=365 * 86400),
    Option("osd_scrub_auto_repair", "bool", False, "Rewrite inconsistent copies found by "
           "scrub from the authoritative one at once, instead of waiting for `pg repair`.",
           ("osd",)),
    Option("osd_debug_replicate_delay", "duration", 0.0, "Fault tests only: the primary "
           "waits this long before sending each write to its replicas (so it can be killed "
           "between its own commit and theirs).", ("osd",), min=0, max=60),
    Option("osd_peering_retry", "duration", 0.5, "Pause before peering again when a member "
           "of the acting set did not answer.", ("osd",), min=0.01, max=60),
    Option("osd_client_message_cap", "int", 256, "Client ops one OSD takes in at a time (as "
           "Ceph's); past it, it stops reading its clients' sessions until ops finish (the "
           "clients wait, nothing is refused).", ("osd",), min=1, max=100000),
    Option("osd_client_message_size_cap", "size", 256 * _MIB, "Bytes of client ops one OSD "
           "holds at a time; one op bigger than this waits until it is alone.", ("osd",),
           min=_MIB, max=1 << 40),
    Option("mds_beacon_interval", "duration", 1.0, "How often an MDS tells the monitors it "
           "is alive.", ("mds", "mon"), min=0.01, max=60),
    Option("mds_beacon_grace", "duration", 5.0, "An MDS silent this long is declared failed "
           "and a standby takes over.", ("mds", "mon"), min=0.05, max=600),
    # --- the file system (mds/ and the FUSE client) ---
    Option("mds_port", "int", 0, "The MDS's gRPC port (set per daemon, [mds.X]); 0 picks a "
           "free one, which the MDS registers with the monitors.", ("mds",), min=0,
           max=65535),
    Option("mds_cache_size", "int", 100_000, "Inodes the MDS keeps cached in memory; clean "
           "directories least recently used are dropped beyond it.", ("mds",), min=100,
           max=100_000_000),
    Option("mds_journal_segment_size", "size", 4 * _MIB, "A journal segment object is closed "
           "and a new one begun past this size; applied segments are removed.", ("mds",),
           min=64 * 1024, max=256 * _MIB),
    Option("mds_journal_batch_interval", "duration", 0.005, "Journal events wait this long "
           "for company before they are appended (replies do not wait: they are early; fsync "
           "and other clients' reads of a change ask for the append at once).", ("mds",),
           min=0, max=1),
    Option("mds_flush_interval", "duration", 1.0, "How often the MDS applies journaled "
           "changes to the directory objects and trims the journal.", ("mds",), min=0.01,
           max=600),
    Option("mds_flush_events", "int", 2000, "Apply and trim as soon as this many journal "
           "events wait, whatever the interval.", ("mds",), min=1, max=10_000_000),
    Option("mds_session_timeout", "duration", 30.0, "A client not heard from this long is "
           "evicted: its open files and locks are released.", ("mds",), min=0.1, max=86400),
    Option("mds_reconnect_timeout", "duration", 10.0, "After a takeover, how long clients "
           "have to reconnect before their sessions are evicted.", ("mds",), min=0.1,
           max=3600),
    Option("client_mds_timeout", "duration", 60.0, "How long a mounted client retries a "
           "metadata request (across an MDS takeover) before the call fails with EIO.",
           ("client",), min=1, max=86400),
    Option("client_object_size", "size", 4 * _MIB, "Data object size of new files (their "
           "layout): a file's bytes are striped over objects of this size.", ("client",),
           min=64 * 1024, max=64 * _MIB),
    Option("client_readahead", "size", 8 * _MIB, "How far a mounted client reads ahead of a "
           "sequential reader.", ("client",), min=0, max=256 * _MIB),
    Option("client_writebehind", "size", 16 * _MIB, "Dirty bytes a mounted client buffers per "
           "file before writing them out (close, fsync and the MDS's recall flush).",
           ("client",), min=0, max=1024 * _MIB),
    Option("mon_snapshot_interval", "int", 1000, "A monitor compacts its log into a snapshot "
           "of the maps every this many applied entries.", ("mon",), min=10, max=1_000_000),
    Option("mon_quorum_grace", "duration", 3.0, "A monitor not heard from for this long counts "
           "as out of quorum in status and health.", ("mon",), min=0.1, max=600),
    Option("osd_crush_chooseleaf_type", "str", "host", "Failure domain of the default CRUSH "
           "rule, set when the cluster is created: host, or osd for a one-machine cluster.",
           ("mon",), choices=("osd", "host", "rack", "row", "room", "datacenter")),
    Option("osd_port", "int", 0, "The OSD's gRPC port (set per daemon, [osd.N]); 0 picks a "
           "free one, which the OSD registers with the monitors.", ("osd",), min=0, max=65535),
    Option("osd_capacity", "size", 0, "The OSD's size, as Ceph's device size: what it "
           "reports as its total space (capped by its file system) and, in TiB, its CRUSH "
           "weight at first boot. 0: its space is the file system under data_dir (OSDs "
           "sharing one count it once) and its weight 1.0.", ("osd",), min=0, max=1 << 60),
    Option("osd_pool_default_size", "int", 3, "Replicas of a new pool.", ("mon", "client"),
           min=1, max=10),
    Option("osd_pool_default_pg_num", "int", 32, "Placement groups of a new pool.",
           ("mon", "client"), min=1, max=65536),
    # --- the S3/Swift gateway (gateway/) ---
    Option("gateway_host", "str", "127.0.0.1", "Address the gateway's HTTP server binds to.",
           ("gateway",)),
    Option("gateway_port", "int", 7480, "The gateway's HTTP port (set per gateway, "
           "[gateway.N]); 0 picks a free one.", ("gateway",), min=0, max=65535),
    Option("gateway_ssl_certificate", "str", "", "PEM certificate (chain) of the gateway's "
           "HTTPS; empty: plain HTTP. Relative to the config file's directory.", ("gateway",)),
    Option("gateway_ssl_key", "str", "", "PEM private key of gateway_ssl_certificate (empty: "
           "in the certificate file).", ("gateway",)),
    Option("gateway_dns_name", "str", "localhost", "Domain of virtual-host style requests: "
           "Host <bucket>.<this> names a bucket; other hosts are path-style.", ("gateway",)),
    Option("gateway_region", "str", "us-east-1", "The region the gateway signs and answers "
           "for (GetBucketLocation).", ("gateway",)),
    Option("gateway_rados_user", "str", "client.admin", "Entity the gateway talks to RADOS "
           "as; the keyring must hold its key.", ("gateway",)),
    Option("gateway_pool_prefix", "str", ".loligo.gw", "Prefix of the gateway's pools "
           "(<prefix>.users, .meta, .index, .data), created on first use.",
           ("gateway", "client")),
    Option("gateway_pool_pg_num", "int", 16, "Placement groups of each gateway pool it "
           "creates.", ("gateway", "client"), min=1, max=65536),
    Option("gateway_bucket_index_shards", "int", 11, "Index shards of a new bucket (omap "
           "objects an object's entry is hashed to; listing merges them).", ("gateway",),
           min=1, max=1024),
    Option("gateway_stripe_size", "size", 4 * _MIB, "Size of the RADOS objects an S3 "
           "object's data is striped over; a request holds about two in memory.",
           ("gateway",), min=64 * 1024, max=32 * _MIB),
    Option("gateway_gc_min_wait", "duration", 300.0, "How long data of an overwritten or "
           "deleted object stays (for GETs still reading it) before GC removes it.",
           ("gateway",), min=0, max=30 * 86400),
    Option("gateway_gc_interval", "duration", 30.0, "How often the gateway's GC worker looks "
           "for due data.", ("gateway",), min=0.01, max=86400),
    Option("gateway_user_cache_ttl", "duration", 5.0, "How long a user and its keys are "
           "cached: a suspension or key removal takes effect within this time.",
           ("gateway",), min=0, max=3600),
    Option("gateway_max_skew", "duration", 900.0, "Largest clock difference accepted in a "
           "signed request (and how early a presigned URL may be used).", ("gateway",),
           min=1, max=86400),
    # --- the manager: the live dashboard (mgr/) ---
    Option("mgr_dashboard_host", "str", "127.0.0.1", "Address the dashboard's HTTP server "
           "binds to.", ("mgr",)),
    Option("mgr_dashboard_port", "int", 7000, "The dashboard's HTTP port (set per manager, "
           "[mgr.X]); 0 picks a free one.", ("mgr",), min=0, max=65535),
    Option("mgr_rados_user", "str", "client.admin", "Entity the manager reads the cluster "
           "as; the keyring must hold its key.", ("mgr",)),
    Option("mgr_poll_interval", "duration", 1.0, "How often the manager asks the monitors "
           "for the cluster's state and reads the daemons' metrics.", ("mgr",),
           min=0.05, max=60),
    Option("mgr_history", "duration", 600.0, "How far back the dashboard's throughput plots "
           "reach.", ("mgr",), min=10, max=86400),
    Option("mgr_session_ttl", "duration", 3600.0, "How long a dashboard sign-in lasts.",
           ("mgr",), min=10, max=7 * 86400),
)})

# (smaller, larger, strict): cross-option rules the per-option bounds cannot express
_ORDERED = (("mon_election_timeout_min", "mon_election_timeout_max", False),
            ("mon_heartbeat_interval", "mon_election_timeout_min", True),
            ("osd_heartbeat_interval", "osd_heartbeat_grace", True),
            ("mds_beacon_interval", "mds_beacon_grace", True),
            ("osd_beacon_interval", "mon_osd_report_grace", True),
            ("rpc_retry_initial", "rpc_retry_max", False))


class Config:
    """The resolved, immutable configuration of one entity, read as attributes (cfg.rpc_timeout)."""

    __slots__ = ("_values", "base_dir", "entity", "source")
    _values: Mapping[str, Any]
    entity: str  # whose view this is: "mon.a", "osd.3", "client.admin"
    source: Path | None  # the file it was read from
    base_dir: Path  # what relative paths are relative to: the file's directory

    def __init__(self, values: Mapping[str, Any], entity: str, source: Path | None,
                 base_dir: Path) -> None:
        for name, value in (("_values", MappingProxyType(dict(values))), ("entity", entity),
                            ("source", source), ("base_dir", base_dir)):
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no config option {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Config is immutable: use cfg.replace(name=value)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and (self._values, self.entity) == (
            other._values, other.entity)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Config(entity={self.entity!r}, source={self.source})"

    @property
    def daemon_type(self) -> str:
        return self.entity.partition(".")[0]

    @classmethod
    def defaults(cls, entity: str = "client.admin", *, base_dir: Path | None = None,
                 **overrides: Any) -> Config:
        """Defaults plus checked overrides, with no file: for tests and first start-up."""
        base = (base_dir or DEFAULT_CONF.expanduser().parent).absolute()
        values = {name: _resolve(opt, opt.default, base) for name, opt in SCHEMA.items()}
        return cls(values, _check_entity(entity, "defaults"), None, base).replace(**overrides)

    def replace(self, **overrides: Any) -> Config:
        """A copy with some options changed, checked like a file's values."""
        values = dict(self._values)
        for name, raw in overrides.items():
            opt = _option(name, "replace()")
            try:
                values[name] = _resolve(opt, opt.parse(KINDS[opt.kind].to_toml(raw)),
                                        self.base_dir)
            except ValueError as exc:
                raise ConfigError(f"replace(): option {name}: {exc}") from None
        _check_relations(values, "replace()")
        return Config(values, self.entity, self.source, self.base_dir)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def dump_toml(self, *, full: bool = False) -> str:
        """This resolved view as a `[global]` section that `load` reads back to an equal Config.

        Only values that differ from the defaults are written unless `full` (paths always, as
        absolute paths, so the file means the same wherever it is written); every option is
        preceded by its help text so the file explains itself.
        """
        chosen = {n: v for n, v in self._values.items()
                  if full or SCHEMA[n].kind == "path" or v != SCHEMA[n].default}
        return format_toml({"global": chosen})


def find_conf(explicit: str | os.PathLike[str] | None = None,
              env: Mapping[str, str] | None = None) -> Path:
    """The config file to use: `--conf FILE`, else $LOLIGO_CONF, else the local cluster's
    `~/.local/share/loligo/cluster/loligo.toml` (where `loligo cluster up` writes it)."""
    env = os.environ if env is None else env
    chosen = explicit or env.get(ENV_CONF) or DEFAULT_CONF
    return Path(chosen).expanduser()


def load(path: str | os.PathLike[str], entity: str = "client.admin",
         env: Mapping[str, str] | None = None) -> Config:
    """Read, check and resolve the configuration of `entity` ("mon.a", "osd.3", "client.admin").

    All sections are checked, not only those of `entity`, so a typo under [osd.3] is caught
    by whichever daemon starts first. `env` defaults to os.environ.
    """
    path = Path(path).expanduser()
    where = str(path)
    entity = _check_entity(entity, where)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such config file (give --conf FILE or set "
                          f"{ENV_CONF}; the default is {DEFAULT_CONF})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    sections = _sections(data, where)
    parsed = {sec: _parse_section(sec, raw, where) for sec, raw in sections.items()}
    base = path.parent.absolute()
    values = {name: _resolve(opt, opt.default, base) for name, opt in SCHEMA.items()}
    dtype = entity.partition(".")[0]
    for sec in ("global", dtype, entity):
        values.update({n: _resolve(SCHEMA[n], v, base) for n, v in parsed.get(sec, {}).items()})
    env = os.environ if env is None else env
    for name, opt in SCHEMA.items():
        var = ENV_PREFIX + name.upper()
        if var in env:
            try:
                values[name] = _resolve(opt, opt.parse(env[var], from_env=True), Path.cwd())
            except ValueError as exc:
                raise ConfigError(f"environment {var}: {exc}") from None
    _check_relations(values, f"{where} (for {entity})")
    return Config(values, entity, path, base)


def describe(daemon: str | None = None) -> str:
    """Every option (or those `daemon` uses) with type, default, bounds and help."""
    lines = []
    for opt in SCHEMA.values():
        if daemon is not None and daemon not in opt.daemons:
            continue
        bounds = "" if opt.min is None else f", {_num(opt.min)}..{_num(opt.max)}"
        choice = f", one of {'/'.join(opt.choices)}" if opt.choices else ""
        unit = {"duration": " s", "size": " bytes"}.get(opt.kind, "")
        default = KINDS[opt.kind].to_toml(opt.default)
        lines.append(f"{opt.name} ({opt.kind}{unit}, default {default!r}{bounds}{choice}) "
                     f"[{', '.join(opt.daemons)}]")
        lines.append(f"    {opt.help}")
    return "\n".join(lines)


def _check_entity(entity: str, where: str) -> str:
    dtype, dot, ident = entity.partition(".")
    if dtype not in DAEMON_TYPES or (dot and not _valid_id(dtype, ident)):
        raise ConfigError(f"{where}: bad entity {entity!r}: expected <type>[.<id>] with type "
                          f"one of {', '.join(DAEMON_TYPES)}")
    return entity


def _valid_id(dtype: str, ident: str) -> bool:
    return bool(re.fullmatch(r"\d+" if dtype == "osd" else r"[A-Za-z0-9_-]+", ident))


def option(name: str, where: str = "") -> Option:
    """The schema's option `name`; a ConfigError saying "unknown option" (and the nearest
    name) otherwise, whoever asks: a config file, `loligo tell ... config set`, `config help`."""
    return _option(name, where)


def _option(name: str, where: str) -> Option:
    if name in SCHEMA:
        return SCHEMA[name]
    near = difflib.get_close_matches(name, SCHEMA, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else " (see `loligo config help`)"
    raise ConfigError(f"{where + ': ' if where else ''}unknown option {name!r}{hint}")


def _sections(data: Mapping[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Flatten TOML tables to {"global": {...}, "mon": {...}, "mon.a": {...}}.

    TOML reads `[mon.a]` as the table "a" inside "mon", and `["mon.a"]` as one key; both mean
    the same section here.
    """
    out: dict[str, dict[str, Any]] = {}
    for key, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: option {key!r} is outside any section: put it under "
                              "[global]")
        dtype, dot, ident = key.partition(".")
        if key == "global" or (dtype in DAEMON_TYPES and (not dot or _valid_id(dtype, ident))):
            for sub_key, value in table.items():
                if isinstance(value, dict) and not dot and key != "global":
                    if not _valid_id(dtype, sub_key) or any(isinstance(v, dict)
                                                            for v in value.values()):
                        raise ConfigError(f"{where}: unknown section [{key}.{sub_key}]")
                    out.setdefault(f"{key}.{sub_key}", {}).update(value)
                else:
                    out.setdefault(key, {})[sub_key] = value
        else:
            raise ConfigError(f"{where}: unknown section [{key}]: sections are [global], "
                              f"[<type>] or [<type>.<id>] with type one of "
                              f"{', '.join(DAEMON_TYPES)} (osd ids are numbers)")
    return out


def _parse_section(section: str, raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = {}
    for name, value in raw.items():
        opt = _option(name, f"{where} [{section}]")
        try:
            out[name] = opt.parse(value)
        except ValueError as exc:
            raise ConfigError(f"{where} [{section}] {name}: {exc}") from None
    return out


def _resolve(opt: Option, value: Any, base: Path) -> Any:
    """Make relative paths relative to the config file's directory (or `base`)."""
    if opt.kind == "path":
        value = Path(value).expanduser()
        return value if value.is_absolute() else base / value
    return value


def _check_relations(values: Mapping[str, Any], where: str) -> None:
    for small, large, strict in _ORDERED:
        if values[small] > values[large] or (strict and values[small] == values[large]):
            word = "below" if strict else "at most"
            raise ConfigError(f"{where}: {small} ({_num(values[small])}) must be {word} "
                              f"{large} ({_num(values[large])})")
    names = [m.name for m in values["mon_host"]]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: mon_host names the same monitor twice: {names}")
