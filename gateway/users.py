"""Gateway users and their keys, kept in RADOS (the `<prefix>.users` pool), shaped as
radosgw-admin prints them.

    user.<uid>            the user as JSON (display name, keys, Swift keys, suspended)
    index.users           omap uid -> ""   (listing users without a pool scan)
    s3key.<access key>    the owner's uid  (authenticating a request: one read)
    swiftkey.<acct:user>  the owner's uid
    email.<address>       the owner's uid  (ACL grants by e-mail address; lower-case)

A user, and each key, is claimed with an exclusive create, so of two admins creating one uid
or one access key only one wins; a key that belongs to someone else is refused.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any

from rados_py.errors import AlreadyExists, InvalidArgument, LoligoError, NotFound
from rados_py.rados import IoCtx, ObjectOp

# a user id, optionally in a tenant (RGW's `tenant$uid`): the tenant's namespace holds its
# buckets (buckets.py)
_UID = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9_-]{0,63}\$)?[A-Za-z0-9][A-Za-z0-9_.@+=-]{0,63}")
_ACCESS = re.compile(r"[A-Za-z0-9_+=.@:-]{3,128}")
_SWIFT_USER = re.compile(r"[A-Za-z0-9_.@-]{1,64}:[A-Za-z0-9_.@-]{1,64}")
USERS, S3KEYS, SWIFTKEYS, EMAILS = "index.users", "s3key.", "swiftkey.", "email."
SWIFT_ACCESS = ("admin", "member")  # the account's owner, or only what container ACLs grant


class UserError(LoligoError):
    """A user command that cannot be done as asked (the message says why)."""


@dataclass
class User:
    user_id: str
    display_name: str = ""
    email: str = ""
    suspended: bool = False
    keys: list[dict[str, str]] = field(default_factory=list)  # {user, access_key, secret_key}
    swift_keys: list[dict[str, str]] = field(default_factory=list)  # {user, secret_key}
    max_buckets: int = 1000
    created: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """radosgw-admin's `user info` shape (the fields Loligo has)."""
        return {"user_id": self.user_id, "display_name": self.display_name,
                "email": self.email, "suspended": int(self.suspended),
                "max_buckets": self.max_buckets, "keys": list(self.keys),
                "swift_keys": list(self.swift_keys)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> User:
        return cls(data["user_id"], data.get("display_name", ""), data.get("email", ""),
                   bool(data.get("suspended", 0)), list(data.get("keys", [])),
                   list(data.get("swift_keys", [])), int(data.get("max_buckets", 1000)),
                   float(data.get("created", 0.0)))

    def secret_for(self, access_key: str) -> str | None:
        for k in self.keys:
            if k["access_key"] == access_key:
                return k["secret_key"]
        return None


def new_access_key() -> str:
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(20))


def new_secret_key() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))


def _check_access(access: str) -> None:
    if access not in SWIFT_ACCESS:
        raise InvalidArgument(f"bad Swift access {access!r}: admin or member")


def check_uid(uid: str) -> str:
    if not _UID.fullmatch(uid or ""):
        raise InvalidArgument(f"bad user id {uid!r}: 1-64 of letters, digits and _.@+=- "
                              "(starting with a letter or digit), optionally after "
                              "`tenant$`")
    return uid


class UserStore:
    """Users in one IoCtx (the users pool)."""

    def __init__(self, io: IoCtx) -> None:
        self.io = io

    async def _save(self, user: User) -> None:
        await self.io.write_full(f"user.{user.user_id}", json.dumps(user.__dict__).encode())

    async def get(self, uid: str) -> User:
        try:
            raw = await self.io.read(f"user.{check_uid(uid)}")
        except NotFound:
            raise NotFound(f"no user {uid!r}") from None
        return User.from_json(json.loads(raw))

    async def ids(self) -> list[str]:
        uids: list[str] = []
        after = b""
        while True:
            try:
                page, more = await self.io.omap_list(USERS, after=after, max_items=1000)
            except NotFound:
                return uids
            uids += [k.decode() for k, _ in page]
            if not more or not page:
                return uids
            after = page[-1][0]

    async def _owner_of(self, kind: str, key: str) -> str | None:
        try:
            return (await self.io.read(kind + key)).decode()
        except NotFound:
            return None

    async def _claim(self, kind: str, key: str, uid: str) -> None:
        """Make `uid` the owner of the key, unless someone else is (atomically)."""
        try:
            await self.io.operate(kind + key, ObjectOp().create(True).write_full(uid.encode()))
        except AlreadyExists:
            if await self._owner_of(kind, key) != uid:
                raise UserError(f"{key!r} belongs to another user") from None

    async def _release(self, kind: str, keys: list[str]) -> None:
        for key in keys:
            with contextlib.suppress(NotFound):
                await self.io.remove(kind + key)

    async def create(self, uid: str, display_name: str = "", *, access_key: str | None = None,
                     secret_key: str | None = None, swift_user: str | None = None,
                     swift_key: str | None = None, email: str = "",
                     swift_access: str = "admin") -> User:
        """A new user with one S3 key pair (chosen or generated), and a Swift key if asked."""
        check_uid(uid)
        _check_access(swift_access)
        user = User(uid, display_name or uid, email, created=time.time())
        access_key = access_key or new_access_key()
        await self._check_free_key(access_key)
        if swift_user is not None:
            await self._check_free_swift(swift_user)
        if email and await self._owner_of(EMAILS, email.lower()) not in (None, uid):
            raise UserError(f"e-mail address {email!r} belongs to another user")
        op = ObjectOp().create(exclusive=True).write_full(json.dumps(user.__dict__).encode())
        try:
            await self.io.operate(f"user.{uid}", op)
        except AlreadyExists:
            raise UserError(f"user {uid!r} exists already") from None
        await self.io.omap_set(USERS, {uid: b""})
        if email:
            await self._claim(EMAILS, email.lower(), uid)
        user = await self.add_key(uid, access_key, secret_key)
        if swift_user is not None:
            user = await self.add_swift_key(uid, swift_user, swift_key, swift_access)
        return user

    async def _check_free_key(self, access_key: str, uid: str | None = None) -> None:
        if not _ACCESS.fullmatch(access_key):
            raise InvalidArgument(f"bad access key {access_key!r}: 3-128 letters, digits or "
                                  "_+=.@:-")
        owner = await self._owner_of(S3KEYS, access_key)
        if owner is not None and owner != uid:
            raise UserError(f"access key {access_key!r} belongs to another user")

    async def _check_free_swift(self, swift_user: str, uid: str | None = None) -> None:
        if not _SWIFT_USER.fullmatch(swift_user):
            raise InvalidArgument(f"bad Swift user {swift_user!r}: expected ACCOUNT:USER")
        owner = await self._owner_of(SWIFTKEYS, swift_user)
        if owner is not None and owner != uid:
            raise UserError(f"Swift user {swift_user!r} belongs to another user")

    async def add_key(self, uid: str, access_key: str | None = None,
                      secret_key: str | None = None) -> User:
        """Add (or, for a key the user has, replace the secret of) an S3 key pair."""
        user = await self.get(uid)
        access_key = access_key or new_access_key()
        await self._check_free_key(access_key, uid)
        if secret_key is not None and len(secret_key) < 6:
            raise InvalidArgument("a secret key has at least 6 characters")
        entry = {"user": uid, "access_key": access_key,
                 "secret_key": secret_key or new_secret_key()}
        await self._claim(S3KEYS, access_key, uid)  # first: a lost race changes nothing
        user.keys = [k for k in user.keys if k["access_key"] != access_key] + [entry]
        await self._save(user)
        return user

    async def add_swift_key(self, uid: str, swift_user: str | None = None,
                            secret_key: str | None = None, access: str = "admin") -> User:
        """Add (or replace) a Swift key; `access` as `set_swift_access` says, in the same
        write, so a member key is never an admin one for a moment."""
        _check_access(access)
        user = await self.get(uid)
        swift_user = swift_user or (uid.replace("$", ":") if "$" in uid else f"{uid}:swift")
        await self._check_free_swift(swift_user, uid)
        entry = {"user": swift_user, "secret_key": secret_key or new_secret_key()}
        if access != "admin":  # admin is what a key without `access` means
            entry["access"] = access
        await self._claim(SWIFTKEYS, swift_user, uid)
        user.swift_keys = [k for k in user.swift_keys if k["user"] != swift_user] + [entry]
        await self._save(user)
        return user

    async def remove_key(self, access_key: str) -> User:
        uid = await self._owner_of(S3KEYS, access_key)
        if uid is None:
            raise NotFound(f"no access key {access_key!r}")
        user = await self.get(uid)
        user.keys = [k for k in user.keys if k["access_key"] != access_key]
        await self._save(user)
        await self._release(S3KEYS, [access_key])
        return user

    async def set_suspended(self, uid: str, suspended: bool) -> User:
        user = await self.get(uid)
        user.suspended = suspended
        await self._save(user)
        return user

    async def remove(self, uid: str) -> None:
        """Remove a user and its keys (the caller checks it owns no bucket)."""
        user = await self.get(uid)
        if user.keys:
            await self._release(S3KEYS, [k["access_key"] for k in user.keys])
        if user.swift_keys:
            await self._release(SWIFTKEYS, [k["user"] for k in user.swift_keys])
        if user.email and await self._owner_of(EMAILS, user.email.lower()) == uid:
            await self._release(EMAILS, [user.email.lower()])
        await self.io.omap_rm(USERS, [uid])
        await self.io.remove(f"user.{uid}")

    async def by_swift_user(self, swift_user: str) -> User | None:
        """The owner of a Swift `account:user` key (the Swift account is the owner's)."""
        uid = await self._owner_of(SWIFTKEYS, swift_user)
        if uid is None:
            return None
        try:
            return await self.get(uid)
        except NotFound:
            return None

    async def set_swift_access(self, uid: str, swift_user: str, access: str) -> User:
        """`admin` (the account's owner: everything) or `member` (only what container ACLs
        grant), like a radosgw subuser's full versus limited access."""
        _check_access(access)
        user = await self.get(uid)
        for k in user.swift_keys:
            if k["user"] == swift_user:
                k["access"] = access
                await self._save(user)
                return user
        raise NotFound(f"user {uid!r} has no Swift user {swift_user!r}")

    async def by_access_key(self, access_key: str) -> User | None:
        uid = await self._owner_of(S3KEYS, access_key)
        if uid is None:
            return None
        try:
            return await self.get(uid)
        except NotFound:
            return None

    async def by_email(self, email: str) -> User | None:
        """The user with this e-mail address (for ACL grants by address). Users created
        before addresses were indexed are found by a scan, which indexes them."""
        uid = await self._owner_of(EMAILS, email.lower())
        if uid is None:
            for candidate in await self.ids():
                with contextlib.suppress(NotFound, InvalidArgument):
                    user = await self.get(candidate)
                    if user.email.lower() == email.lower():
                        with contextlib.suppress(UserError):
                            await self._claim(EMAILS, email.lower(), user.user_id)
                        return user
            return None
        try:
            return await self.get(uid)
        except NotFound:
            return None


def tenant_of(uid: str) -> str:
    """The tenant of a user id (`tenant$uid`), "" for a user of the global namespace."""
    return uid.partition("$")[0] if "$" in uid else ""
