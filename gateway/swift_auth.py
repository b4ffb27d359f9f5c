"""Swift authentication, tempauth style: `GET /auth/v1.0` with X-Auth-User `account:user` and
X-Auth-Key answers a token and the storage URL; later requests carry X-Auth-Token.

A token is not stored: it names its user and expiry and is signed (HMAC-SHA256) with a secret
kept in RADOS (`swift.token_secret` in the users pool, created once by whichever gateway needs
it first), so any gateway of the cluster accepts a token another one issued, and a restart
invalidates nothing. Each request still reads the user (cached for gateway_user_cache_ttl), so a
removed Swift key, a removed or suspended user stops working within that time.

    AUTH_tk<base64url("uid\\nacct:user\\nexpires")>.<hmac hex>
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from aiohttp import web

from gateway.swift_errors import SwiftError
from gateway.users import User, UserStore
from rados_py.errors import AlreadyExists, InvalidArgument, NotFound
from rados_py.rados import ObjectOp

TOKEN_PREFIX = "AUTH_tk"
TOKEN_TTL = 24 * 3600  # tempauth's default token life
SECRET_OID = "swift.token_secret"
ACCOUNT_PREFIX = "AUTH_"


@dataclass(frozen=True)
class Token:
    uid: str
    swift_user: str
    expires: int


def sign_token(secret: bytes, uid: str, swift_user: str, expires: int) -> str:
    payload = base64.urlsafe_b64encode(f"{uid}\n{swift_user}\n{expires}".encode())
    text = payload.decode().rstrip("=")
    mac = hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()
    return f"{TOKEN_PREFIX}{text}.{mac}"


def verify_token(secret: bytes, token: str, now: float) -> Token | None:
    """The token's content if it is ours, intact and not expired; None otherwise."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 1024:
        return None
    text, _, mac = token[len(TOKEN_PREFIX):].rpartition(".")
    good = hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(good, mac):
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        uid, swift_user, expires = raw.split("\n")
        token_expires = int(expires)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if token_expires < now:
        return None
    return Token(uid, swift_user, token_expires)


async def load_secret(store: UserStore) -> bytes:
    """The cluster's token secret, created by the first gateway that needs one (an exclusive
    create: of two racing gateways one wins and both use its secret)."""
    try:
        return await store.io.read(SECRET_OID)
    except NotFound:
        pass
    with contextlib.suppress(AlreadyExists):
        await store.io.operate(SECRET_OID, ObjectOp().create(True).write_full(
            secrets.token_bytes(32)))
    return await store.io.read(SECRET_OID)


@dataclass
class Identity:
    """Who sent a Swift request. `user` owns the token's account; `swift_user` is the key
    used ("" for anonymous); only an admin key acts as the account's owner."""

    user: User | None
    swift_user: str = ""
    admin: bool = False
    tempurl: bool = False  # a valid TempURL: this one request on this one object

    @property
    def account(self) -> str:
        return self.user.user_id if self.user is not None else ""


def key_entry(user: User, swift_user: str) -> dict[str, str] | None:
    for k in user.swift_keys:
        if k["user"] == swift_user:
            return k
    return None


class Authenticator:
    """Issues and checks tokens; keeps the secret and a short-lived cache of users."""

    def __init__(self, store: UserStore, ttl: float, token_ttl: int = TOKEN_TTL) -> None:
        self.store = store
        self.ttl = ttl
        self.token_ttl = token_ttl
        self._secret: bytes | None = None
        self._users: dict[str, tuple[float, User | None]] = {}

    async def secret(self) -> bytes:
        if self._secret is None:
            self._secret = await load_secret(self.store)
        return self._secret

    async def user(self, uid: str) -> User | None:
        now = time.monotonic()
        hit = self._users.get(uid)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        try:
            user: User | None = await self.store.get(uid)
        except (NotFound, InvalidArgument):
            user = None
        if len(self._users) > 10000:
            self._users.clear()
        self._users[uid] = (now, user)
        return user

    async def login(self, swift_user: str, key: str) -> tuple[str, int, str]:
        """(token, seconds it lives, account) for a right `account:user` and key; 401 else."""
        user = await self.store.by_swift_user(swift_user) if swift_user and key else None
        entry = key_entry(user, swift_user) if user is not None else None
        if user is None or entry is None or not hmac.compare_digest(
                entry["secret_key"].encode(), key.encode()):
            raise SwiftError(401, "Bad user or key")
        if user.suspended:
            raise SwiftError(403, "The user is suspended")
        expires = int(time.time()) + self.token_ttl
        return (sign_token(await self.secret(), user.user_id, swift_user, expires),
                self.token_ttl, user.user_id)

    async def identify(self, token: str | None) -> Identity:
        """The identity of a request's token (anonymous without one); 401 for a bad one."""
        if not token:
            return Identity(None)
        found = verify_token(await self.secret(), token, time.time())
        user = await self.user(found.uid) if found is not None else None
        entry = key_entry(user, found.swift_user) if user and found else None
        if found is None or user is None or entry is None:
            raise SwiftError(401, "Invalid or expired token")
        if user.suspended:
            raise SwiftError(403, "The user is suspended")
        return Identity(user, found.swift_user, entry.get("access", "admin") == "admin")


def storage_url(request: web.Request, account: str) -> str:
    scheme = "https" if request.secure else "http"
    host = request.headers.get("Host") or f"{request.url.host}:{request.url.port}"
    return f"{scheme}://{host}/v1/{ACCOUNT_PREFIX}{account}"


async def auth_response(request: web.Request, auth: Authenticator) -> web.Response:
    """`GET /auth/v1.0` (also /auth/v1): the token and where to use it."""
    if request.method not in ("GET", "HEAD"):
        raise SwiftError(405, "Use GET")
    headers = request.headers
    swift_user = headers.get("X-Auth-User") or headers.get("X-Storage-User") or ""
    key = headers.get("X-Auth-Key") or headers.get("X-Storage-Pass") or ""
    token, ttl, account = await auth.login(swift_user, key)
    url = storage_url(request, account)
    return web.Response(status=200, headers={
        "X-Auth-Token": token, "X-Storage-Token": token, "X-Storage-Url": url,
        "X-Auth-Token-Expires": str(ttl), "Content-Type": "text/plain; charset=utf-8"})
