"""What every S3 handler works with: the gateway's services (stores, settings) and one request
already routed (bucket, key, query) and authenticated, with the permission checks of canned
ACLs (the bucket's owner may do anything; `public-read` lets anyone read, `public-read-write`
also write)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway import access, acl, errors, policy
from gateway.body import Body
from gateway.buckets import Bucket, BucketStore
from gateway.gc import GarbageCollector
from gateway.objects import ObjectStore
from gateway.s3_auth import Identity, UserCache
from gateway.users import User, UserStore, tenant_of
from rados_py.errors import InvalidArgument, NotFound
from rados_py.rados import IoCtx

MAX_OBJECT = 5 * (1 << 30)  # S3's largest single PUT
CANNED_ACLS = ("private", "public-read", "public-read-write", "authenticated-read")
# the owner's hot-path requests, served from a cached bucket entry
CACHED_ACTIONS = frozenset({"s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                            "s3:ListBucket", "s3:AbortMultipartUpload",
                            "s3:ListMultipartUploadParts"})


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
    lifecycle: Any = None  # lifecycle.LifecycleWorker (registers buckets with rules)
    sse_key: bytes | None = None  # the master key of SSE-S3/KMS (s3_sse.py); None: not read yet


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

    def qualify(self, name: str) -> str:
        """The bucket a name means for this requester: `tenant:bucket` names one of a
        tenant's buckets (`:bucket` one of the global namespace); a plain name is one of the
        requester's own tenant (RGW's rules)."""
        return qualify(name, self.user.user_id if self.user is not None else None)

    def is_owner(self, bucket: Bucket) -> bool:
        return self.user is not None and self.user.user_id == bucket.owner

    @functools.cached_property
    def subject(self) -> access.Subject:
        uid = self.user.user_id if self.user is not None else None
        tenant = uid.partition("$")[0] if uid and "$" in uid else ""
        subject = access.Subject(policy.Principal(uid, tenant))
        subject.keys = _LazyKeys(self)
        return subject

    def allowed(self, action: str, bucket: Bucket, key: str | None = None,
                entry: dict[str, Any] | None = None,
                extra: dict[str, list[str]] | None = None) -> bool:
        return access.decide(self.subject, action, bucket, key, entry, extra)

    def check(self, action: str, bucket: Bucket, key: str | None = None,
              entry: dict[str, Any] | None = None,
              extra: dict[str, list[str]] | None = None) -> None:
        """AccessDenied unless the requester may do `action` (access.py decides)."""
        if not access.decide(self.subject, action, bucket, key, entry, extra):
            raise errors.AccessDenied()

    async def bucket(self, action: str, key: str | None = None) -> Bucket:
        """The request's bucket if the requester may do `action` to it (or, with `key`, to
        an object of it whose entry is not needed for the decision: writes, deletes).

        The owner's requests may use a recently read entry: what they depend on that can
        change (versioning, the bucket's existence) is checked by the index ops themselves,
        and a change of the bucket's policy or ACL by this gateway forgets it at once."""
        if action in CACHED_ACTIONS:
            cached = await self.svc.buckets.get(self.bucket_name, cached=True)
            if self.is_owner(cached) and not cached.policy:
                self.used_cache = True
                return cached
        bucket = await self.svc.buckets.get(self.bucket_name)
        self.check(action, bucket, key)
        return bucket

    def body(self, max_size: int = MAX_OBJECT) -> Body:
        return Body(self.http.content, self.headers, self.identity.payload_hash,
                    self.identity.signer, max_size, self.http)

    async def small_body(self, limit: int) -> bytes:
        """A small request body (XML), verified like any other."""
        out = bytearray()
        body = self.body(limit)
        pieces: AsyncIterator[bytes] = body.pieces()
        async for piece in pieces:
            out += piece
        return bytes(out)

    async def grantee(self, kind: str, value: str) -> str:
        """The user id a grant names (by "id" or "email"); S3's error if there is none."""
        if kind == "email":
            found = await self.svc.users.by_email(value)
            if found is None:
                raise acl.UnresolvableGrantByEmailAddress(EmailAddress=value[:256])
            return found.user_id
        try:
            return (await self.svc.users.get(value)).user_id
        except (NotFound, InvalidArgument):
            raise errors.InvalidArgument("Invalid id", ArgumentName="CanonicalUser/ID",
                                         ArgumentValue=value[:128]) from None

    async def new_acl(self, bucket: Bucket | None, headers: dict[str, str] | None = None,
                      body: bytes = b"") -> acl.Acl | None:
        """The ACL a request asks for (x-amz-acl, x-amz-grant-*, or an XML body) for a new
        object of `bucket` (or, with `bucket` None, a new bucket), checked against the
        bucket's public access block and object ownership; None when it asks for none."""
        canned = acl.OBJECT_CANNED if bucket is not None else acl.BUCKET_CANNED
        wanted = await acl.from_request(self.headers if headers is None else headers, body,
                                        self.grantee, canned)
        if wanted is None or bucket is None:
            return wanted
        if bucket.ownership == "BucketOwnerEnforced" and wanted != "bucket-owner-full-control":
            raise acl.AccessControlListNotSupported()
        if bucket.public_block.get("BlockPublicAcls") and acl.is_public(
                acl.grants_of(wanted, "-")):
            raise errors.AccessDenied("Public ACLs are blocked for this bucket")
        return wanted

    def new_owner(self, bucket: Bucket, acl_name: acl.Acl | None) -> str:
        """Who owns an object this request writes: the writer, or the bucket's owner when
        the bucket says so (object ownership)."""
        writer = self.user.user_id if self.user is not None else bucket.owner
        if bucket.ownership == "BucketOwnerEnforced" or (
                bucket.ownership == "BucketOwnerPreferred"
                and acl_name == "bucket-owner-full-control"):
            return bucket.owner
        return writer

    def canned_acl(self, headers: dict[str, str] | None = None) -> str:
        """x-amz-acl of the request (or of `headers`, e.g. a POST form), checked."""
        acl = (self.headers if headers is None else headers).get("x-amz-acl", "private")
        if acl not in CANNED_ACLS:
            raise errors.InvalidArgument(f"Unsupported canned ACL {acl!r}",
                                         ArgumentName="x-amz-acl", ArgumentValue=acl)
        return acl


class _LazyKeys(Mapping[str, list[str]]):
    """A request's policy condition keys, worked out only if a policy looks at them."""

    def __init__(self, req: S3Request) -> None:
        self.req = req
        self._keys: dict[str, list[str]] | None = None

    def _all(self) -> dict[str, list[str]]:
        if self._keys is None:
            req, http = self.req, self.req.http
            peer = http.remote or ""
            self._keys = access.request_keys(
                secure=http.secure, source_ip=peer, user_agent=req.headers.get(
                    "user-agent", ""), referer=req.headers.get("referer", ""),
                uid=req.user.user_id if req.user else None,
                signature=req.identity.signature, auth_type=req.identity.auth_type,
                headers=req.headers, query=req.query)
        return self._keys

    def __getitem__(self, name: str) -> list[str]:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def qualify(name: str, uid: str | None) -> str:
    if "/" in name:  # qualified already
        return name
    if ":" in name:
        tenant, _, short = name.partition(":")
        return f"{tenant}/{short}" if tenant else short
    tenant = tenant_of(uid) if uid else ""
    return f"{tenant}/{name}" if tenant and name else name
