"""What every Swift handler works with: the gateway's services, one request already routed
(account, container, object) and authenticated, and the access rules.

The account of a Swift URL (`AUTH_<uid>`) is a gateway user: its containers are its S3 buckets.
An admin key of that account may do anything in it. Anyone else (a member key of the account, a
user of another account, or nobody) gets what the container's ACLs grant, or a valid TempURL's
one request; a public-read S3 bucket is readable too.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway import acl, errors, swift_acl
from gateway.body import expect_continue
from gateway.buckets import Bucket
from gateway.context import Services
from gateway.swift_auth import Authenticator, Identity
from gateway.swift_errors import SwiftError
from gateway.users import tenant_of


@dataclass
class SwiftState:
    svc: Services
    auth: Authenticator


@dataclass
class SwiftRequest:
    http: web.Request
    state: SwiftState
    path: str  # the request's path, decoded
    account: str  # the uid the URL names
    container: str
    obj: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    identity: Identity

    @property
    def svc(self) -> Services:
        return self.state.svc

    @property
    def is_admin(self) -> bool:
        ident = self.identity
        return ident.admin and not ident.tempurl and ident.account == self.account

    @property
    def owner(self) -> str:
        """Who a new object belongs to: the account (as in Swift, data is the account's)."""
        return self.account

    def qualified(self, name: str) -> str:
        """The bucket of this account's container `name`: containers live in the account
        owner's tenant (the global namespace for users without one)."""
        tenant = tenant_of(self.account)
        return f"{tenant}/{name}" if tenant else name

    def deny(self) -> SwiftError:
        return SwiftError(401 if self.identity.user is None and not self.identity.tempurl
                          else 403)

    async def small_body(self, limit: int) -> bytes:
        """A small request body (a manifest, a bulk-delete list): 413 beyond `limit`."""
        declared = self.http.content_length
        if declared is not None and declared > limit:
            raise SwiftError(413, f"The body is larger than {limit} bytes")
        data = bytearray()
        await expect_continue(self.http)
        while piece := await self.http.content.read(65536):
            data += piece
            if len(data) > limit:
                raise SwiftError(413, f"The body is larger than {limit} bytes")
        return bytes(data)

    def need_admin(self) -> None:
        if not self.is_admin:
            raise self.deny()

    async def bucket(self, access: str, name: str | None = None) -> Bucket:
        """The container (this request's, or `name` in the same account) if the requester may
        `access` it: "read" objects, "list" it, "write" objects, or "admin" it."""
        name = self.container if name is None else name
        try:
            bucket = await self.svc.buckets.get(self.qualified(name))
        except errors.NoSuchBucket as exc:
            if self.is_admin or self.identity.tempurl:
                raise
            raise self.deny() from exc  # a stranger learns nothing about what exists
        if bucket.owner != self.account:
            if self.is_admin:
                raise SwiftError(404, "The container is not in this account")
            raise self.deny()
        if self.is_admin or (self.identity.tempurl and access in ("read", "write")):
            return bucket
        if access != "admin" and self.allowed(bucket, access):
            return bucket
        raise self.deny()

    def allowed(self, bucket: Bucket, access: str) -> bool:
        read, write = bucket.swift.get("read", ""), bucket.swift.get("write", "")
        who = self.identity.swift_user
        if access == "read":
            return (swift_acl.anyone_reads(read) or swift_acl.grants(read, who)
                    or acl.allows(acl.grants_of(bucket.acl, bucket.owner), None, "READ"))
        if access == "list":
            return swift_acl.anyone_lists(read) or swift_acl.grants(read, who)
        if access == "write":
            return swift_acl.grants(write, who)
        return False

