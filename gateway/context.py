"""What every S3 handler works with: the gateway's services (stores, settings) and one request
already routed (bucket, key, query) and authenticated, with the permission checks of canned
ACLs (the bucket's owner may do anything; `public-read` lets anyone read, `public-read-write`
also write)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway import errors
from gateway.body import Body
from gateway.buckets import Bucket, BucketStore
from gateway.gc import GarbageCollector
from gateway.objects import ObjectStore
from gateway.s3_auth import Identity, UserCache
from gateway.users import User, UserStore
from rados_py.rados import IoCtx

MAX_OBJECT = 5 * (1 << 30)  # S3's largest single PUT
CANNED_ACLS = ("private", "public-read", "public-read-write", "authenticated-read")


@dataclass
class Services:
    users: UserStore
    user_cache: UserCache
    buckets: BucketStore
    objects: ObjectStore
    gc: GarbageCollector
    meta: IoCtx  # the meta pool (multipart uploads)
    region: str = "us-east-1"
    dns_names: tuple[str, ...] = ()
    max_skew: float = 900.0


@dataclass
class S3Request:
    http: web.Request
    svc: Services
    bucket_name: str
    key: str
    query: dict[str, str]
    headers: dict[str, str]
    identity: Identity
    request_id: str
    extra_headers: dict[str, str] = field(default_factory=dict)
    used_cache: bool = False  # the bucket entry came from the cache (server.py may retry)

    @property
    def user(self) -> User | None:
        return self.identity.user

    @property
    def resource(self) -> str:
        return f"/{self.bucket_name}/{self.key}" if self.key else f"/{self.bucket_name}"

    def need_user(self) -> User:
        if self.user is None:
            raise errors.AccessDenied()
        return self.user

    async def display_names(self, uids: Iterable[str]) -> dict[str, str]:
        return {uid: await self.svc.user_cache.display_name(uid) for uid in set(uids)}

    def is_owner(self, bucket: Bucket) -> bool:
        return self.user is not None and self.user.user_id == bucket.owner

    async def bucket(self, access: str = "owner") -> Bucket:
        """The request's bucket if the requester may `access` ("read", "write", "owner") it.

        The owner's reads and writes may use a recently read entry: what they depend on that
        can change (versioning, the bucket's existence) is checked by the index ops
        themselves. Changing the bucket ("owner") and others' access (its ACL) read it now."""
        if access in ("read", "write"):
            cached = await self.svc.buckets.get(self.bucket_name, cached=True)
            if self.is_owner(cached):
                self.used_cache = True
                return cached
        bucket = await self.svc.buckets.get(self.bucket_name)
        if self.is_owner(bucket):
            return bucket
        allowed = {"read": ("public-read", "public-read-write"),
                   "write": ("public-read-write",)}.get(access, ())
        if bucket.acl in allowed or (bucket.acl == "authenticated-read" and access == "read"
                                     and self.user is not None):
            return bucket
        raise errors.AccessDenied()

    def can_read_object(self, bucket: Bucket, entry: dict[str, Any]) -> bool:
        if self.is_owner(bucket):
            return True
        acl = entry.get("acl", "private")
        return acl in ("public-read", "public-read-write") or (
            acl == "authenticated-read" and self.user is not None)

    def body(self, max_size: int = MAX_OBJECT) -> Body:
        return Body(self.http.content, self.headers, self.identity.payload_hash,
                    self.identity.signer, max_size)

    async def small_body(self, limit: int) -> bytes:
        """A small request body (XML), verified like any other."""
        out = bytearray()
        body = self.body(limit)
        pieces: AsyncIterator[bytes] = body.pieces()
        async for piece in pieces:
            out += piece
        return bytes(out)

    def canned_acl(self, headers: dict[str, str] | None = None) -> str:
        """x-amz-acl of the request (or of `headers`, e.g. a POST form), checked."""
        acl = (self.headers if headers is None else headers).get("x-amz-acl", "private")
        if acl not in CANNED_ACLS:
            raise errors.InvalidArgument(f"Unsupported canned ACL {acl!r}",
                                         ArgumentName="x-amz-acl", ArgumentValue=acl)
        return acl
