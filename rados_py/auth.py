"""Cephx-like authentication: keyrings, identity proofs, signed tickets and caps.

How the pieces fit, and why each exists:

- Every entity (`client.admin`, `osd.3`, `mds.a`) has a secret key in a keyring (TOML, mode
  0600); the monitors hold all keys. The key of the `mon.` entry is the cluster's *service
  secret*, given to every daemon.
- A client proves to a monitor that it holds its key with `prove_identity` (an HMAC over entity,
  timestamp, nonce and audience): the key itself never crosses the wire. The monitor checks the
  proof with `Authenticator.authenticate`, which remembers recent nonces (`ReplayCache`) so a
  captured proof cannot be used twice, and refuses proofs outside a freshness window.
- The monitor answers with a ticket signed with the service secret (`issue_ticket`). Every daemon
  holds that secret, so it checks a ticket locally (`verify_ticket`) with no round trip to the
  monitors; the expiry bounds how long a stolen ticket is useful.
- `authorize` checks a ticket's caps for one service and kind of operation.

Trade-off: any daemon holding the service secret could mint tickets (Ceph shares service keys
among the daemons of a kind in the same way); rotating per-service secrets could come later
behind the same functions. Tokens are base64url(SignedToken) from proto/loligo/auth.proto: the
MAC covers the body bytes as sent and is compared with hmac.compare_digest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import os
import re
import secrets
import stat
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from google.protobuf.message import DecodeError

from rados_py.atomic_file import write_atomic
from rados_py.errors import InvalidArgument, LoligoError
from rados_py.proto.loligo import auth_pb2

__all__ = ["SERVICES", "AuthError", "Authenticator", "KeyEntry", "Keyring", "PermissionDenied",
           "ReplayCache", "Ticket", "authorize", "check_key", "check_op_kind", "check_proof",
           "default_caps", "issue_ticket", "normalize_caps", "parse_grant", "peek_ticket",
           "prove_identity", "validate_entity", "verify_ticket"]

SERVICES = ("mon", "osd", "mds")
SERVICE_ENTITY = "mon."  # its key is the service secret that signs tickets
KEY_BYTES = 32
MIN_KEY_BYTES = 16
MAX_TOKEN_CHARS = 4096  # a ticket is ~150 chars; anything far bigger is not ours
_VERSION = 1
_TICKET_PURPOSE = b"loligo-ticket-v1"
_PROOF_PURPOSE = b"loligo-proof-v1"
_ENTITY_RE = re.compile(r"mon\.|osd\.\d+|mds\.[A-Za-z0-9_-]+|client\.[A-Za-z0-9_.-]+")
_GRANT_RE = re.compile(r"allow\s+(\*|[rwx]+)")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")


class AuthError(LoligoError):
    """Who is calling cannot be established: no, malformed, forged or expired ticket or proof."""


class PermissionDenied(LoligoError):
    """The caller is known but its caps do not allow this operation."""


def validate_entity(entity: str) -> str:
    """`mon.`, `osd.N`, `mds.X` or `client.X`; anything else is refused."""
    if not isinstance(entity, str) or not _ENTITY_RE.fullmatch(entity):
        raise InvalidArgument(f"bad entity name {entity!r}: expected mon., osd.N, mds.X or "
                              "client.X")
    return entity


def parse_grant(grant: str) -> frozenset[str]:
    """The permissions of `allow *`, `allow r`, `allow rw`, `allow rwx` ... ("*" means all)."""
    match = _GRANT_RE.fullmatch(grant.strip()) if isinstance(grant, str) else None
    letters = match[1] if match else ""
    if not match or (letters != "*" and len(set(letters)) != len(letters)):
        raise InvalidArgument(f"bad cap {grant!r}: expected 'allow *' or 'allow' followed by "
                              "some of r, w, x (e.g. 'allow rw')")
    return frozenset("rwx*") if letters == "*" else frozenset(letters)


def normalize_caps(caps: Mapping[str, str]) -> dict[str, str]:
    """Checked caps with one spelling per grant (`allow rw`), so equal caps compare equal."""
    out = {}
    for service, grant in caps.items():
        if service not in SERVICES:
            raise InvalidArgument(f"caps for unknown service {service!r}: services are "
                                  f"{', '.join(SERVICES)}")
        perms = parse_grant(grant)
        out[service] = "allow *" if "*" in perms else "allow " + "".join(
            p for p in "rwx" if p in perms)
    return dict(sorted(out.items()))


ADMIN_ENTITY = "client.admin"


def default_caps(entity: str) -> dict[str, str]:
    """What each kind of entity needs, for the launcher writing a new keyring."""
    kind = validate_entity(entity).partition(".")[0]
    if entity == ADMIN_ENTITY:  # the operator: everything, like Ceph's client.admin
        return {"mon": "allow *", "osd": "allow *", "mds": "allow *"}
    return {"mon": {"mon": "allow *", "osd": "allow *", "mds": "allow *"},
            "osd": {"mon": "allow rwx", "osd": "allow *"},
            "mds": {"mon": "allow rwx", "osd": "allow rwx", "mds": "allow *"},
            "client": {"mon": "allow r", "osd": "allow rw", "mds": "allow rw"}}[kind]


@dataclass(frozen=True)
class Ticket:
    """A verified (or, from `peek_ticket`, merely decoded) ticket; `token` is what travels."""

    entity: str
    caps: Mapping[str, str]
    issued_at: float  # Unix time, seconds
    expires_at: float
    nonce: bytes
    token: str = field(default="", repr=False, compare=False)


def _mac(key: bytes, purpose: bytes, body: bytes) -> bytes:
    return hmac.new(key, purpose + b"\0" + body, hashlib.sha256).digest()


def check_key(key: bytes, what: str) -> bytes:
    """A secret long enough to sign with, or InvalidArgument naming `what`."""
    if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
        raise InvalidArgument(f"{what} must be at least {MIN_KEY_BYTES} random bytes")
    return key


def _seal(key: bytes, purpose: bytes, body: bytes) -> str:
    signed = auth_pb2.SignedToken(version=_VERSION, body=body, mac=_mac(key, purpose, body))
    return base64.urlsafe_b64encode(signed.SerializeToString()).rstrip(b"=").decode("ascii")


def _unseal(token: str, what: str) -> auth_pb2.SignedToken:
    """Decode a token's envelope; the MAC is checked by the caller, who knows the key."""
    if not token:
        raise AuthError(f"no {what}")
    if (not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS
            or not _B64URL_RE.fullmatch(token)):
        raise AuthError(f"malformed {what}: not a Loligo token")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        signed = auth_pb2.SignedToken.FromString(raw)
    except (binascii.Error, ValueError, DecodeError):
        raise AuthError(f"malformed {what}: not a Loligo token") from None
    if signed.version != _VERSION:
        raise AuthError(f"unsupported {what} version {signed.version}: upgrade this daemon")
    return signed


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def issue_ticket(service_secret: bytes, entity: str, caps: Mapping[str, str], ttl: float,
                 now: float, nonce: bytes | None = None) -> Ticket:
    """Grant `entity` its caps for `ttl` seconds from `now` (done by a monitor)."""
    check_key(service_secret, "the service secret")
    if ttl <= 0:
        raise InvalidArgument(f"ticket ttl must be positive, got {ttl}")
    body = auth_pb2.TicketBody(entity=validate_entity(entity), caps=normalize_caps(caps),
                               issued_at_ms=_ms(now), expires_at_ms=_ms(now + ttl),
                               nonce=nonce if nonce is not None else secrets.token_bytes(16))
    token = _seal(service_secret, _TICKET_PURPOSE, body.SerializeToString())
    return _ticket(body, token)


def _ticket(body: auth_pb2.TicketBody, token: str) -> Ticket:
    return Ticket(entity=body.entity, caps=MappingProxyType(dict(sorted(body.caps.items()))),
                  issued_at=body.issued_at_ms / 1000, expires_at=body.expires_at_ms / 1000,
                  nonce=body.nonce, token=token)


def _ticket_body(signed: auth_pb2.SignedToken) -> auth_pb2.TicketBody:
    try:
        body = auth_pb2.TicketBody.FromString(signed.body)
        validate_entity(body.entity)
        normalize_caps(body.caps)
    except (DecodeError, InvalidArgument) as exc:
        raise AuthError(f"malformed ticket: {exc}") from None
    return body


def verify_ticket(service_secret: bytes, token: str, now: float) -> Ticket:
    """The ticket in `token` if this cluster's service secret signed it and it has not expired."""
    check_key(service_secret, "the service secret")
    signed = _unseal(token, "ticket")
    if not hmac.compare_digest(signed.mac, _mac(service_secret, _TICKET_PURPOSE, signed.body)):
        raise AuthError("forged ticket or one from another cluster: bad signature")
    body = _ticket_body(signed)
    if now * 1000 >= body.expires_at_ms:
        raise AuthError(f"ticket of {body.entity} expired {now - body.expires_at_ms / 1000:.1f}s "
                        "ago: authenticate again")
    return _ticket(body, token)


def peek_ticket(token: str) -> Ticket:
    """Decode a ticket WITHOUT checking it: for a client to see when to renew, never to trust."""
    return _ticket(_ticket_body(_unseal(token, "ticket")), token)


def authorize(ticket: Ticket, service: str, op_kind: str) -> None:
    """Allow the operation or raise PermissionDenied.

    `op_kind` is the permissions the operation needs: some of r, w, x (read, write, execute
    class methods / admin commands), or "*" for what only `allow *` may do.
    """
    if service not in SERVICES:
        raise InvalidArgument(f"unknown service {service!r}: services are {', '.join(SERVICES)}")
    needed = check_op_kind(op_kind)
    grant = ticket.caps.get(service)
    if grant is None or not needed <= parse_grant(grant):
        have = f"'{grant}'" if grant else "no caps"
        raise PermissionDenied(f"{ticket.entity} may not '{op_kind}' on {service} (has {have})")


def check_op_kind(op_kind: str) -> frozenset[str]:
    """The permissions an operation kind needs: some of r, w, x, or "*" alone."""
    needed = frozenset(op_kind) if isinstance(op_kind, str) else frozenset("?")
    if not op_kind or not needed <= frozenset("rwx*") or ("*" in needed and op_kind != "*"):
        raise InvalidArgument(f"bad op kind {op_kind!r}: expected some of r, w, x, or '*'")
    return needed


def prove_identity(key: bytes, entity: str, now: float, nonce: bytes | None = None,
                   audience: str = "") -> str:
    """A one-time proof that the caller holds `entity`'s key, to trade for a ticket.

    `audience` binds the proof to its recipient (e.g. "<fsid>/mon"), so a proof captured on the
    way to one cluster is refused by another.
    """
    check_key(key, f"the key of {entity}")
    nonce = secrets.token_bytes(16) if nonce is None else nonce
    if len(nonce) < 16:
        raise InvalidArgument("a proof nonce must be at least 16 bytes")
    body = auth_pb2.IdentityProof(entity=validate_entity(entity), timestamp_ms=_ms(now),
                                  nonce=nonce, audience=audience)
    return _seal(key, _PROOF_PURPOSE, body.SerializeToString())


class ReplayCache:
    """Nonces of accepted proofs for as long as those proofs could still be fresh.

    Bounded: when full, the oldest entry is dropped and every proof not newer than it is refused
    from then on, so dropping an entry never lets its proof be replayed.
    """

    def __init__(self, window: float, capacity: int = 100_000) -> None:
        self.window = window
        self.capacity = capacity
        self._seen: set[tuple[str, bytes]] = set()
        self._heap: list[tuple[float, str, bytes]] = []
        self._floor = float("-inf")

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, entity: str, nonce: bytes, timestamp: float, now: float) -> None:
        while self._heap and self._heap[0][0] < now - self.window:
            _, old_entity, old_nonce = heapq.heappop(self._heap)
            self._seen.discard((old_entity, old_nonce))
        if (entity, nonce) in self._seen:
            raise AuthError(f"replayed proof for {entity}: make a fresh one")
        if timestamp <= self._floor:
            raise AuthError(f"proof for {entity} is older than this monitor can check for "
                            "replays (busy): make a fresh one")
        self._seen.add((entity, nonce))
        heapq.heappush(self._heap, (timestamp, entity, nonce))
        if len(self._heap) > self.capacity:
            ts, old_entity, old_nonce = heapq.heappop(self._heap)
            self._seen.discard((old_entity, old_nonce))
            self._floor = max(self._floor, ts)


@dataclass(frozen=True)
class KeyEntry:
    entity: str
    key: bytes = field(repr=False)
    caps: Mapping[str, str]


def check_proof(keyring: Keyring, token: str, now: float, *, window: float,
                replays: ReplayCache, audience: str = "") -> KeyEntry:
    """The keyring entry of whoever made this proof, if it is genuine, fresh and unused."""
    signed = _unseal(token, "identity proof")
    try:
        proof = auth_pb2.IdentityProof.FromString(signed.body)
    except DecodeError:
        raise AuthError("malformed identity proof") from None
    entry = keyring.get(proof.entity)
    if entry is None:  # checked before the MAC only to find the key; nothing else is trusted
        raise AuthError(f"unknown entity {proof.entity!r}: not in the monitors' keyring")
    if not hmac.compare_digest(signed.mac, _mac(entry.key, _PROOF_PURPOSE, signed.body)):
        raise AuthError(f"bad identity proof for {entry.entity}: wrong key")
    if proof.audience != audience:
        raise AuthError(f"identity proof for {entry.entity} was made for {proof.audience!r}, "
                        f"not {audience!r}: wrong cluster?")
    skew = now - proof.timestamp_ms / 1000
    if abs(skew) > window:
        raise AuthError(f"identity proof for {entry.entity} is {skew:+.1f}s off this monitor's "
                        f"clock (window {window:g}s): check the clocks (NTP)")
    if len(proof.nonce) < 16:
        raise AuthError("malformed identity proof: nonce too short")
    replays.check_and_add(entry.entity, proof.nonce, proof.timestamp_ms / 1000, now)
    return entry


class Authenticator:
    """The monitors' side of the handshake: a proof in, a signed ticket out."""

    def __init__(self, keyring: Keyring, *, ticket_ttl: float, proof_window: float,
                 audience: str = "", replay_capacity: int = 100_000) -> None:
        self.keyring = keyring
        self.ticket_ttl = ticket_ttl
        self.proof_window = proof_window
        self.audience = audience
        self.replays = ReplayCache(proof_window, replay_capacity)
        self._mtime = self._stamp()

    def _stamp(self) -> float:
        try:
            return os.stat(self.keyring.path).st_mtime if self.keyring.path else 0.0
        except OSError:
            return 0.0

    def _reload(self) -> bool:
        """Read the keyring file again if it changed (a daemon was added with its key, e.g.
        `loligo cluster add-osd`); whether it did. The cluster secret must stay the same."""
        stamp = self._stamp()
        if not stamp or stamp == self._mtime:
            return False
        fresh = Keyring.load(self.keyring.path)
        if fresh.service_secret != self.keyring.service_secret:
            raise AuthError(f"keyring {self.keyring.path} now holds another cluster secret: "
                            "not using it")
        self.keyring, self._mtime = fresh, stamp
        return True

    def authenticate(self, proof_token: str, now: float) -> Ticket:
        try:
            entry = check_proof(self.keyring, proof_token, now, window=self.proof_window,
                                replays=self.replays, audience=self.audience)
        except AuthError as exc:
            if "unknown entity" not in str(exc) or not self._reload():
                raise
            entry = check_proof(self.keyring, proof_token, now, window=self.proof_window,
                                replays=self.replays, audience=self.audience)
        return issue_ticket(self.keyring.service_secret, entry.entity, entry.caps,
                            self.ticket_ttl, now)


class Keyring:
    """Entities' keys and caps, read from or written to a 0600 TOML file.

    Loading and writing touch the disk: a daemon does it at start-up, or through
    asyncio.to_thread once its event loop runs.
    """

    def __init__(self, entries: Mapping[str, KeyEntry], path: Path | None = None) -> None:
        self._entries = MappingProxyType(dict(entries))
        self.path = path

    def __contains__(self, entity: object) -> bool:
        return entity in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def get(self, entity: str) -> KeyEntry | None:
        return self._entries.get(entity)

    def key(self, entity: str) -> bytes:
        """The key of `entity`, or an AuthError naming the keyring to fix."""
        entry = self._entries.get(entity)
        if entry is None:
            where = f" {self.path}" if self.path else ""
            raise AuthError(f"no key for {entity} in keyring{where}")
        return entry.key

    @property
    def service_secret(self) -> bytes:
        return self.key(SERVICE_ENTITY)

    @classmethod
    def generate(cls, entities: Mapping[str, Mapping[str, str]]) -> Keyring:
        """Fresh random keys for `entities` (name -> caps); `mon.` is added if missing."""
        wanted = dict(entities)
        wanted.setdefault(SERVICE_ENTITY, default_caps(SERVICE_ENTITY))
        return cls({name: KeyEntry(validate_entity(name), secrets.token_bytes(KEY_BYTES),
                                   MappingProxyType(normalize_caps(caps)))
                    for name, caps in wanted.items()})

    @classmethod
    def create(cls, path: str | os.PathLike[str], entities: Mapping[str, Mapping[str, str]],
               *, overwrite: bool = False) -> Keyring:
        """Generate keys and write them to `path` (mode 0600, atomically)."""
        ring = cls.generate(entities)
        ring.write(path, overwrite=overwrite)
        return ring

    def with_entity(self, entity: str, caps: Mapping[str, str]) -> Keyring:
        """This keyring plus a fresh random key for `entity` (a daemon added later)."""
        if entity in self._entries:
            raise AuthError(f"{entity} already has a key")
        entry = KeyEntry(validate_entity(entity), secrets.token_bytes(KEY_BYTES),
                         MappingProxyType(normalize_caps(caps)))
        return Keyring({**self._entries, entity: entry}, self.path)

    def to_toml(self) -> str:
        out = []
        for entry in self._entries.values():
            caps = ", ".join(f'{svc} = "{grant}"' for svc, grant in entry.caps.items())
            out += [f'["{entry.entity}"]', f'key = "{base64.b64encode(entry.key).decode()}"',
                    f"caps = {{ {caps} }}", ""]
        return "\n".join(out)

    def write(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write to `path` with mode 0600 from the first byte: temp file, fsync, rename."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise AuthError(f"keyring {path} already exists: not overwriting its keys")
        write_atomic(path, self.to_toml(), 0o600)
        self.path = path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Keyring:
        """Read a keyring, refusing one that group or others could read."""
        path = Path(path).expanduser()
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise AuthError(f"cannot open keyring {path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
            if mode & 0o077:
                raise AuthError(f"keyring {path} is accessible by group or others (mode "
                                f"{mode:04o}): run chmod 600 {path}")
            raw = f.read()
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise AuthError(f"keyring {path}: not valid TOML: {exc}") from None
        entries = {}
        for name, table in _flatten(data):
            entries[name] = _entry(path, name, table)
        return cls(entries, path)


def _flatten(data: Mapping[str, object], prefix: str = "") -> list[tuple[str, dict]]:
    """`[client.admin]` reads as table "admin" in "client"; `["client.admin"]` as one key."""
    out: list[tuple[str, dict]] = []
    for key, value in data.items():
        name = prefix + key
        if isinstance(value, dict) and not {"key", "caps"} & value.keys():
            out += _flatten(value, name + ".")
        else:
            out.append((name, value if isinstance(value, dict) else {"key": value}))
    return out


def _entry(path: Path, name: str, table: dict) -> KeyEntry:
    where = f"keyring {path} [{name}]"
    try:
        validate_entity(name)
        unknown = set(table) - {"key", "caps"}
        if unknown:
            raise InvalidArgument(f"unknown field(s) {', '.join(sorted(unknown))}")
        if "key" not in table:
            raise InvalidArgument("missing key")
        caps = table.get("caps", {})
        if not isinstance(caps, dict):
            raise InvalidArgument("caps must be a table like { osd = \"allow rw\" }")
        if not isinstance(table["key"], str):
            raise InvalidArgument("key must be a base64 string")
        key = base64.b64decode(table["key"], validate=True)
        check_key(key, "key")
        return KeyEntry(name, key, MappingProxyType(normalize_caps(caps)))
    except (InvalidArgument, binascii.Error, ValueError) as exc:
        raise AuthError(f"{where}: {exc}") from None
