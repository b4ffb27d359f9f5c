"""auth.py: tickets that cannot be forged, tampered with or used after expiry, proofs that cannot
be replayed, caps, and keyrings that refuse to be world-readable."""

from __future__ import annotations

import base64
import os
import re
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rados_py import auth
from rados_py.auth import AuthError, Keyring, PermissionDenied
from rados_py.errors import InvalidArgument, LoligoError
from rados_py.proto.loligo import auth_pb2

SECRET = bytes(range(32))
NOW = 1_700_000_000.0


def _envelope(token: str) -> auth_pb2.SignedToken:
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    return auth_pb2.SignedToken.FromString(raw)


def _token(signed: auth_pb2.SignedToken) -> str:
    return base64.urlsafe_b64encode(signed.SerializeToString()).rstrip(b"=").decode()


def test_ticket_round_trip() -> None:
    issued = auth.issue_ticket(SECRET, "client.admin", {"osd": "allow  rw", "mon": "allow *"},
                               ttl=600, now=NOW)
    got = auth.verify_ticket(SECRET, issued.token, NOW + 599)
    assert got == issued
    assert (got.entity, dict(got.caps)) == ("client.admin", {"mon": "allow *",
                                                             "osd": "allow rw"})
    assert (got.issued_at, got.expires_at) == (NOW, NOW + 600)
    assert got.token.isascii() and len(got.token) < 200  # fits gRPC metadata comfortably
    assert auth.peek_ticket(issued.token) == issued
    assert issubclass(AuthError, LoligoError) and issubclass(PermissionDenied, LoligoError)


def test_ticket_from_another_secret_is_forged() -> None:
    token = auth.issue_ticket(b"y" * 32, "client.admin", {"osd": "allow *"}, 60, NOW).token
    with pytest.raises(AuthError, match="bad signature"):
        auth.verify_ticket(SECRET, token, NOW)


def test_tampered_caps_or_signature_are_refused() -> None:
    token = auth.issue_ticket(SECRET, "client.x", {"osd": "allow r"}, 60, NOW).token
    signed = _envelope(token)
    body = auth_pb2.TicketBody.FromString(signed.body)
    body.caps["osd"] = "allow *"
    body.expires_at_ms += 10**9
    signed.body = body.SerializeToString()
    with pytest.raises(AuthError, match="bad signature"):
        auth.verify_ticket(SECRET, _token(signed), NOW)
    signed = _envelope(token)
    signed.mac = bytes([signed.mac[0] ^ 1]) + signed.mac[1:]
    with pytest.raises(AuthError, match="bad signature"):
        auth.verify_ticket(SECRET, _token(signed), NOW)


def test_expired_ticket_is_refused() -> None:
    token = auth.issue_ticket(SECRET, "osd.3", {"osd": "allow *"}, 10, NOW).token
    auth.verify_ticket(SECRET, token, NOW + 9.999)
    with pytest.raises(AuthError, match=r"ticket of osd\.3 expired 0\.0s ago"):
        auth.verify_ticket(SECRET, token, NOW + 10)


@pytest.mark.parametrize("token", ["", "!!!", "A" * 5000, "AAAA", "_-_-", "a b",
                                   _token(auth_pb2.SignedToken(version=2, body=b"", mac=b""))])
def test_malformed_tickets_are_auth_errors(token: str) -> None:
    with pytest.raises(AuthError, match=r"no ticket|malformed|unsupported|bad signature"):
        auth.verify_ticket(SECRET, token, NOW)


def test_signed_but_nonsense_body_is_malformed() -> None:
    bad = auth_pb2.TicketBody(entity="root", expires_at_ms=int(NOW * 2000)).SerializeToString()
    token = auth._seal(SECRET, auth._TICKET_PURPOSE, bad)
    with pytest.raises(AuthError, match="malformed ticket"):
        auth.verify_ticket(SECRET, token, NOW)


def test_proof_cannot_pass_as_ticket() -> None:
    proof = auth.prove_identity(SECRET, "client.admin", NOW)
    with pytest.raises(AuthError):
        auth.verify_ticket(SECRET, proof, NOW)


def test_bad_inputs_to_issue_are_invalid_arguments() -> None:
    with pytest.raises(InvalidArgument, match="at least 16"):
        auth.issue_ticket(b"short", "client.a", {}, 60, NOW)
    with pytest.raises(InvalidArgument, match="bad entity"):
        auth.issue_ticket(SECRET, "admin", {}, 60, NOW)
    with pytest.raises(InvalidArgument, match="unknown service"):
        auth.issue_ticket(SECRET, "client.a", {"rgw": "allow *"}, 60, NOW)
    with pytest.raises(InvalidArgument, match="ttl"):
        auth.issue_ticket(SECRET, "client.a", {}, 0, NOW)


@pytest.mark.parametrize(("grant", "op", "allowed"), [
    ("allow *", "*", True), ("allow *", "rwx", True), ("allow rwx", "*", False),
    ("allow r", "r", True), ("allow r", "w", False), ("allow rw", "rw", True),
    ("allow rw", "x", False), ("allow wr", "w", True), ("allow x", "x", True),
    (None, "r", False),
])
def test_authorize(grant: str | None, op: str, allowed: bool) -> None:
    ticket = auth.issue_ticket(SECRET, "client.x", {} if grant is None else {"osd": grant}, 60,
                               NOW)
    if allowed:
        auth.authorize(ticket, "osd", op)
    else:
        with pytest.raises(PermissionDenied, match=re.escape(f"client.x may not '{op}' on osd")):
            auth.authorize(ticket, "osd", op)


@pytest.mark.parametrize("grant", ["allow", "allow q", "deny r", "allow rr", "allow r w", "",
                                   "allow *r"])
def test_bad_cap_grammar(grant: str) -> None:
    with pytest.raises(InvalidArgument, match="bad cap"):
        auth.parse_grant(grant)


def test_authorize_refuses_bad_service_or_op() -> None:
    ticket = auth.issue_ticket(SECRET, "client.x", {"osd": "allow *"}, 60, NOW)
    for service, op in [("rgw", "r"), ("osd", ""), ("osd", "q"), ("osd", "r*")]:
        with pytest.raises(InvalidArgument):
            auth.authorize(ticket, service, op)


@pytest.fixture
def ring() -> Keyring:
    return Keyring.generate({"client.admin": {"mon": "allow *", "osd": "allow *"},
                             "osd.0": auth.default_caps("osd.0")})


def _check(ring: Keyring, proof: str, now: float, cache: auth.ReplayCache | None = None,
           audience: str = "") -> auth.KeyEntry:
    return auth.check_proof(ring, proof, now, window=30, audience=audience,
                            replays=auth.ReplayCache(30) if cache is None else cache)


def test_proof_round_trip_and_replay(ring: Keyring) -> None:
    cache = auth.ReplayCache(30)
    proof = auth.prove_identity(ring.key("client.admin"), "client.admin", NOW)
    assert _check(ring, proof, NOW + 1, cache).entity == "client.admin"
    with pytest.raises(AuthError, match="replayed proof"):
        _check(ring, proof, NOW + 2, cache)
    other = auth.prove_identity(ring.key("client.admin"), "client.admin", NOW + 2)
    assert _check(ring, other, NOW + 2, cache).entity == "client.admin"


def test_stale_future_or_misdirected_proofs(ring: Keyring) -> None:
    key = ring.key("osd.0")
    with pytest.raises(AuthError, match=r"-?\+?31.0s off .*NTP"):
        _check(ring, auth.prove_identity(key, "osd.0", NOW - 31), NOW)
    with pytest.raises(AuthError, match="off this monitor's clock"):
        _check(ring, auth.prove_identity(key, "osd.0", NOW + 31), NOW)
    proof = auth.prove_identity(key, "osd.0", NOW, audience="fsid-a/mon")
    with pytest.raises(AuthError, match="wrong cluster"):
        _check(ring, proof, NOW, audience="fsid-b/mon")
    assert _check(ring, proof, NOW, audience="fsid-a/mon").entity == "osd.0"


def test_proof_with_wrong_key_or_unknown_entity(ring: Keyring) -> None:
    with pytest.raises(AuthError, match=r"bad identity proof for client\.admin: wrong key"):
        _check(ring, auth.prove_identity(b"k" * 32, "client.admin", NOW), NOW)
    with pytest.raises(AuthError, match=r"unknown entity 'client\.eve'"):
        _check(ring, auth.prove_identity(b"k" * 32, "client.eve", NOW), NOW)
    # osd.0 relabels its own proof as client.admin's: the MAC no longer matches
    signed = _envelope(auth.prove_identity(ring.key("osd.0"), "osd.0", NOW))
    body = auth_pb2.IdentityProof.FromString(signed.body)
    body.entity = "client.admin"
    signed.body = body.SerializeToString()
    with pytest.raises(AuthError, match="wrong key"):
        _check(ring, _token(signed), NOW)
    with pytest.raises(InvalidArgument, match="nonce"):
        auth.prove_identity(ring.key("osd.0"), "osd.0", NOW, nonce=b"short")


def test_replay_cache_is_bounded_and_never_forgets_unsafely() -> None:
    cache = auth.ReplayCache(window=30, capacity=3)
    for i in range(5):
        cache.check_and_add("client.a", bytes([i]) * 16, NOW + i, NOW + i)
    assert len(cache) == 3
    for i in range(2):  # evicted while still fresh: refused by the floor, not forgotten
        with pytest.raises(AuthError, match="older than this monitor can check"):
            cache.check_and_add("client.a", bytes([i]) * 16, NOW + i, NOW + 5)
    cache.check_and_add("client.a", b"n" * 16, NOW + 100, NOW + 100)  # old entries expired
    assert len(cache) == 1


def test_authenticator_end_to_end(ring: Keyring) -> None:
    mon = auth.Authenticator(ring, ticket_ttl=60, proof_window=30, audience="c/mon")
    proof = auth.prove_identity(ring.key("osd.0"), "osd.0", NOW, audience="c/mon")
    ticket = mon.authenticate(proof, NOW + 1)
    checked = auth.verify_ticket(ring.service_secret, ticket.token, NOW + 30)
    assert checked.entity == "osd.0" and checked.expires_at == NOW + 61
    auth.authorize(checked, "osd", "rwx")
    with pytest.raises(PermissionDenied):
        auth.authorize(checked, "mds", "r")
    with pytest.raises(AuthError, match="replayed"):
        mon.authenticate(proof, NOW + 2)


def test_a_key_added_to_the_keyring_file_is_known_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "keyring"
    ring = Keyring.create(path, {"client.admin": {"mon": "allow *"}})
    mon = auth.Authenticator(Keyring.load(path), ticket_ttl=60, proof_window=30, audience="m")
    grown = ring.with_entity("osd.7", auth.default_caps("osd.7"))
    with pytest.raises(AuthError, match="already has a key"):
        grown.with_entity("osd.7", {})
    os.utime(path, (1, 1))  # the rewrite below must look like a change whatever the clock
    grown.write(path, overwrite=True)
    proof = auth.prove_identity(grown.key("osd.7"), "osd.7", NOW, audience="m")
    assert mon.authenticate(proof, NOW + 1).entity == "osd.7"
    stranger = Keyring.generate({"osd.8": {}})
    with pytest.raises(AuthError, match="unknown entity"):
        mon.authenticate(auth.prove_identity(stranger.key("osd.8"), "osd.8", NOW,
                                             audience="m"), NOW + 1)
    Keyring.create(path, {"osd.9": {}}, overwrite=True)  # another cluster's secret: refused
    os.utime(path, (2, 2))
    with pytest.raises(AuthError, match="another cluster secret"):
        mon.authenticate(auth.prove_identity(stranger.key("osd.8"), "osd.8", NOW,
                                             audience="m"), NOW + 2)


def test_keyring_create_and_load(tmp_path: Path) -> None:
    path = tmp_path / "keyring"
    made = Keyring.create(path, {"client.admin": {"mon": "allow *"},
                                 "mds.a": auth.default_caps("mds.a")})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name != "keyring"]  # no temp file left
    loaded = Keyring.load(path)
    assert sorted(loaded) == ["client.admin", "mds.a", "mon."]
    for name in loaded:
        assert loaded.get(name) == made.get(name)
    assert len(loaded.service_secret) == 32
    with pytest.raises(AuthError, match="already exists"):
        Keyring.create(path, {})
    again = Keyring.create(path, {}, overwrite=True)
    assert Keyring.load(path).service_secret == again.service_secret != made.service_secret


def test_keyring_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keyring"
    Keyring.create(path, {"client.admin": {}})
    os.chmod(path, 0o644)
    with pytest.raises(AuthError, match=rf"mode 0644\): run chmod 600 {path}"):
        Keyring.load(path)
    os.chmod(path, 0o620)
    with pytest.raises(AuthError, match="chmod 600"):
        Keyring.load(path)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


KEY = base64.b64encode(b"k" * 32).decode()


def test_keyring_accepts_both_section_spellings(tmp_path: Path) -> None:
    ring = Keyring.load(_write(tmp_path / "k", f"""
        ["mon."]
        key = "{KEY}"
        [client.admin]
        key = "{KEY}"
        caps = {{ mon = "allow *", osd = "allow rw" }}
        [osd.12]
        key = "{KEY}"
    """))
    assert sorted(ring) == ["client.admin", "mon.", "osd.12"]
    assert dict(ring.get("client.admin").caps) == {"mon": "allow *", "osd": "allow rw"}
    assert dict(ring.get("osd.12").caps) == {}


@pytest.mark.parametrize(("text", "error"), [
    (f'[client.a]\nkey = "{base64.b64encode(b"short").decode()}"', r"\[client.a\]: key must be"),
    ('[client.a]\nkey = "not base64!"', r"\[client.a\]"),
    (f'[client.a]\nkey = "{KEY}"\ncaps = {{ osd = "allow all" }}', "bad cap"),
    (f'[client.a]\nkey = "{KEY}"\ncaps = {{ rgw = "allow *" }}', "unknown service"),
    (f'[client.a]\nkey = "{KEY}"\nkye = 1', "unknown field"),
    ('[client.a]\ncaps = { osd = "allow r" }', r"\[client.a\]: missing key"),
    (f'[admin]\nkey = "{KEY}"', "bad entity name"),
    ("[client.a\n", "not valid TOML"),
])
def test_malformed_keyrings(tmp_path: Path, text: str, error: str) -> None:
    path = _write(tmp_path / "keyring", text)
    with pytest.raises(AuthError, match=error) as info:
        Keyring.load(path)
    assert str(path) in str(info.value)


def test_missing_keyring_or_entity(tmp_path: Path) -> None:
    with pytest.raises(AuthError, match="cannot open keyring"):
        Keyring.load(tmp_path / "nope")
    ring = Keyring.load(_write(tmp_path / "k", f'[client.a]\nkey = "{KEY}"'))
    with pytest.raises(AuthError, match=r"no key for mon\. in keyring"):
        _ = ring.service_secret


@settings(max_examples=50, deadline=None)
@given(entity=st.from_regex(r"client\.[a-z0-9_-]{1,12}|osd\.[0-9]{1,4}", fullmatch=True),
       grants=st.dictionaries(st.sampled_from(auth.SERVICES),
                              st.sampled_from(["allow *", "allow r", "allow rw", "allow rwx"])),
       ttl=st.floats(0.001, 1e6), position=st.integers(0, 10**6), bit=st.integers(0, 7))
def test_any_ticket_round_trips_and_any_bit_flip_is_caught(entity: str, grants: dict[str, str],
                                                          ttl: float, position: int,
                                                          bit: int) -> None:
    issued = auth.issue_ticket(SECRET, entity, grants, ttl, NOW)
    assert auth.verify_ticket(SECRET, issued.token, NOW) == issued
    raw = bytearray(base64.urlsafe_b64decode(issued.token + "=" * (-len(issued.token) % 4)))
    raw[position % len(raw)] ^= 1 << bit
    flipped = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(AuthError):
        auth.verify_ticket(SECRET, flipped, NOW)
