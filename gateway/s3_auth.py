"""Who sent an S3 request: SigV4 (header or presigned query) checked against the user's secret
from RADOS, with a short-lived cache so a burst of requests costs no lookup each. A suspended
user or a removed key stops working within the cache's lifetime.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway import errors, sigv2, sigv4
from gateway.users import User, UserStore
from rados_py.errors import InvalidArgument, NotFound


class UserCache:
    def __init__(self, store: UserStore, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self._cache: dict[str, tuple[float, User | None]] = {}
        self._names: dict[str, tuple[float, str]] = {}

    async def display_name(self, uid: str) -> str:
        """The user's display name (its id if the user is gone), as listings show owners."""
        now = time.monotonic()
        hit = self._names.get(uid)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        try:
            name = (await self.store.get(uid)).display_name
        except (NotFound, InvalidArgument):
            name = uid
        if len(self._names) > 10000:
            self._names.clear()
        self._names[uid] = (now, name)
        return name

    async def by_access_key(self, access_key: str) -> User | None:
        now = time.monotonic()
        hit = self._cache.get(access_key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        user = await self.store.by_access_key(access_key)
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[access_key] = (now, user)
        return user


@dataclass
class Identity:
    user: User | None  # None: anonymous
    payload_hash: str = sigv4.UNSIGNED
    signer: sigv4.ChunkSigner | None = None
    signature: str = ""  # s3:signatureversion: "AWS" (SigV2) or "AWS4-HMAC-SHA256"
    auth_type: str = ""  # s3:authType: REST-HEADER, REST-QUERY-STRING or POST


@dataclass
class Target:
    """What the request addresses, as the signatures need it."""

    method: str
    raw_path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    bucket: str
    virtual_host: bool
    has_body: bool


async def _user(cache: UserCache, access_key: str) -> tuple[User, str]:
    user = await cache.by_access_key(access_key)
    secret = user.secret_for(access_key) if user is not None else None
    if user is None or secret is None:
        raise errors.InvalidAccessKeyId(AWSAccessKeyId=access_key)
    return user, secret


async def authenticate(cache: UserCache, t: Target, max_skew: float,
                       now: datetime | None = None) -> Identity:
    """The requester, or an S3Error (InvalidAccessKeyId, SignatureDoesNotMatch, expired...)."""
    now = now or datetime.now(UTC)
    headers = t.headers
    auth = headers.get("authorization")
    names = {k for k, _ in t.query}
    if auth is not None:
        if not auth.strip():
            raise errors.AccessDenied("An empty Authorization header")
        if auth.startswith("AWS "):
            return await _v2_header(cache, t, auth, max_skew, now)
        creds = sigv4.from_header(auth, headers.get("x-amz-date") or "")
    elif "X-Amz-Algorithm" in names or "X-Amz-Credential" in names:
        creds = sigv4.from_query(dict(t.query))
    elif "AWSAccessKeyId" in names:
        return await _v2_query(cache, t, now)
    else:
        return Identity(None, headers.get("x-amz-content-sha256", sigv4.UNSIGNED))
    user, secret = await _user(cache, creds.access_key)
    method, raw_path, query, has_body = t.method, t.raw_path, t.query, t.has_body
    payload_hash = sigv4.payload_hash_for(headers.get("x-amz-content-sha256"), creds.presigned,
                                          has_body)
    canonical = sigv4.canonical_request(method, raw_path, query, headers, creds.signed_headers,
                                        payload_hash, creds.presigned)
    key = sigv4.verify(creds, secret, canonical)
    # time after the signature: a stranger learns nothing about our clock
    sigv4.check_time(creds, now, max_skew)
    if user.suspended:
        raise errors.AccessDenied("The user is suspended")
    signer = None
    if payload_hash in (sigv4.STREAMING_SIGNED, sigv4.STREAMING_SIGNED_TRAILER):
        signer = sigv4.ChunkSigner(key, creds.amz_date, creds.scope, creds.signature)
    return Identity(user, payload_hash, signer, "AWS4-HMAC-SHA256",
                    "REST-QUERY-STRING" if creds.presigned else "REST-HEADER")


def _v2_identity(user: User, headers: dict[str, str], auth_type: str) -> Identity:
    if user.suspended:
        raise errors.AccessDenied("The user is suspended")
    # SigV2 signs no payload; a SigV4-style hash header, if sent, is still checked
    return Identity(user, headers.get("x-amz-content-sha256", sigv4.UNSIGNED), None, "AWS",
                    auth_type)


async def _v2_header(cache: UserCache, t: Target, auth: str, max_skew: float,
                     now: datetime) -> Identity:
    access_key, claimed = sigv2.parse_header(auth)
    user, secret = await _user(cache, access_key)
    date_slot, when = sigv2.header_date(t.headers)
    resources = sigv2.canonical_resources(t.bucket, t.raw_path, t.query, t.virtual_host)
    sigv2.verify(secret, [sigv2.string_to_sign(t.method, t.headers, date_slot, r)
                          for r in resources], claimed)
    if abs(now.timestamp() - when) > max_skew:
        raise errors.RequestTimeTooSkewed()
    return _v2_identity(user, t.headers, "REST-HEADER")


async def _v2_query(cache: UserCache, t: Target, now: datetime) -> Identity:
    query = dict(t.query)
    if "Signature" not in query or "Expires" not in query:
        raise errors.AccessDenied("Query-string authentication requires the Signature, "
                                  "Expires and AWSAccessKeyId parameters")
    user, secret = await _user(cache, query["AWSAccessKeyId"])
    resources = sigv2.canonical_resources(t.bucket, t.raw_path, t.query, t.virtual_host)
    sigv2.verify(secret, [sigv2.string_to_sign(t.method, t.headers, query["Expires"], r)
                          for r in resources], query["Signature"])
    try:
        expires = int(query["Expires"])
    except ValueError:
        raise errors.AccessDenied("Expires must be a number") from None
    if now.timestamp() > expires:
        raise errors.AccessDenied("Request has expired", Expires=query["Expires"])
    return _v2_identity(user, t.headers, "REST-QUERY-STRING")
