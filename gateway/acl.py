"""S3 access control lists: grants of READ, WRITE, READ_ACP, WRITE_ACP or FULL_CONTROL to a
user (by id, or by e-mail address resolved to the user's id when the ACL is put, as S3 does) or
to a group (AllUsers, AuthenticatedUsers, LogDelivery).

An ACL is stored in the bucket entry or the object's index entry either as the name of a canned
ACL (`private`, `public-read`...: what most requests set, expanded when read) or as the list of
grants `[[kind, who, permission], ...]` with kind "user" or "group". A grant that cannot be
stored (an unknown user, an unknown e-mail address, a permission S3 does not have) is refused
with S3's error, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping

from gateway import errors, s3_xml
from gateway.s3_xml import Node, document

GROUPS = "http://acs.amazonaws.com/groups/"
ALL_USERS = GROUPS + "global/AllUsers"
AUTH_USERS = GROUPS + "global/AuthenticatedUsers"
LOG_DELIVERY = GROUPS + "s3/LogDelivery"
KNOWN_GROUPS = (ALL_USERS, AUTH_USERS, LOG_DELIVERY)
PERMISSIONS = ("FULL_CONTROL", "READ", "WRITE", "READ_ACP", "WRITE_ACP")
BUCKET_CANNED = ("private", "public-read", "public-read-write", "authenticated-read",
                 "log-delivery-write")
OBJECT_CANNED = ("private", "public-read", "public-read-write", "authenticated-read",
                 "bucket-owner-read", "bucket-owner-full-control", "aws-exec-read")
GRANT_HEADERS = {"x-amz-grant-read": "READ", "x-amz-grant-write": "WRITE",
                 "x-amz-grant-read-acp": "READ_ACP", "x-amz-grant-write-acp": "WRITE_ACP",
                 "x-amz-grant-full-control": "FULL_CONTROL"}
XSI = "http://www.w3.org/2001/XMLSchema-instance"

Grant = tuple[str, str, str]  # (kind "user" | "group", user id or group URI, permission)
Acl = str | list[list[str]]  # as stored: a canned name or the grants
Resolver = Callable[[str, str], Awaitable[str]]  # (kind "id" | "email", value) -> user id

MalformedACLError = type("MalformedACLError", (errors.S3Error,), {
    "code": "MalformedACLError", "status": 400,
    "default": "The XML you provided was not well-formed or did not validate against our "
               "published schema"})
UnresolvableGrantByEmailAddress = type("UnresolvableGrantByEmailAddress", (errors.S3Error,), {
    "code": "UnresolvableGrantByEmailAddress", "status": 400,
    "default": "The e-mail address you provided does not match any account on record."})
AccessControlListNotSupported = type("AccessControlListNotSupported", (errors.S3Error,), {
    "code": "AccessControlListNotSupported", "status": 400,
    "default": "The bucket does not allow ACLs"})


def canned(name: str, owner: str, bucket_owner: str | None = None) -> list[Grant]:
    """The grants a canned ACL stands for, in the order S3 (and RGW) lists them: groups and
    the bucket owner first, the owner's FULL_CONTROL last."""
    extra: list[Grant] = {
        "private": [],
        "public-read": [("group", ALL_USERS, "READ")],
        "public-read-write": [("group", ALL_USERS, "READ"), ("group", ALL_USERS, "WRITE")],
        "authenticated-read": [("group", AUTH_USERS, "READ")],
        "log-delivery-write": [("group", LOG_DELIVERY, "WRITE"),
                               ("group", LOG_DELIVERY, "READ_ACP")],
        "aws-exec-read": [],
        "bucket-owner-read": ([("user", bucket_owner, "READ")]
                              if bucket_owner and bucket_owner != owner else []),
        "bucket-owner-full-control": ([("user", bucket_owner, "FULL_CONTROL")]
                                      if bucket_owner and bucket_owner != owner else []),
    }.get(name, [])
    return [*extra, ("user", owner, "FULL_CONTROL")]


def grants_of(acl: Acl | None, owner: str, bucket_owner: str | None = None) -> list[Grant]:
    """The grants of a stored ACL."""
    if acl is None or isinstance(acl, str):
        return canned(acl or "private", owner, bucket_owner)
    return [(g[0], g[1], g[2]) for g in acl]


def allows(grants: Iterable[Grant], uid: str | None, permission: str,
           ignore_public: bool = False) -> bool:
    """Whether the grants give `permission` to the user `uid` (None: anonymous)."""
    for kind, who, perm in grants:
        if perm not in (permission, "FULL_CONTROL"):
            continue
        if kind == "user" and uid is not None and who == uid:
            return True
        if kind == "group" and not ignore_public and (
                who == ALL_USERS or (who == AUTH_USERS and uid is not None)):
            return True
    return False


def is_public(grants: Iterable[Grant]) -> bool:
    return any(kind == "group" and who in (ALL_USERS, AUTH_USERS)
               for kind, who, _ in grants)


def _header_grants(value: str) -> list[tuple[str, str]]:
    """`id="u1", emailAddress="a@b", uri="http://..."` as (kind, value) pairs."""
    out = []
    for item in re.split(r",(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)", value):
        item = item.strip()
        if not item:
            continue
        kind, eq, raw = item.partition("=")
        if not eq:
            raise errors.InvalidArgument(f"Invalid grant {item!r}")
        kind = kind.strip().lower()
        who = raw.strip().strip('"')
        if kind not in ("id", "emailaddress", "uri"):
            raise errors.InvalidArgument(f"Invalid grantee type {kind!r}")
        out.append((kind, who))
    return out


async def _grant(kind: str, who: str, permission: str, resolve: Resolver) -> Grant:
    if permission not in PERMISSIONS:
        raise MalformedACLError(f"Invalid permission {permission!r}")
    if kind == "uri":
        if who not in KNOWN_GROUPS:
            raise errors.InvalidArgument(f"Invalid group uri {who!r}")
        return ("group", who, permission)
    if kind == "emailaddress":
        return ("user", await resolve("email", who), permission)
    return ("user", await resolve("id", who), permission)


async def from_request(headers: Mapping[str, str], body: bytes, resolve: Resolver,
                       allowed_canned: tuple[str, ...]) -> Acl | None:
    """The ACL a request asks for (x-amz-acl, x-amz-grant-* headers or an
    AccessControlPolicy body); None when it asks for none."""
    canned_name = headers.get("x-amz-acl")
    grant_headers = {h: v for h, v in headers.items() if h in GRANT_HEADERS}
    if canned_name is not None and grant_headers:
        raise errors.InvalidRequest("Specifying both Canned ACLs and Header Grants is not "
                                    "allowed")
    if canned_name is not None:
        if canned_name not in allowed_canned:
            raise errors.InvalidArgument(f"Unsupported canned ACL {canned_name!r}",
                                         ArgumentName="x-amz-acl", ArgumentValue=canned_name)
        return canned_name
    if grant_headers:
        grants: list[list[str]] = []
        for header, value in grant_headers.items():
            for kind, who in _header_grants(value):
                grants.append(list(await _grant(kind, who, GRANT_HEADERS[header], resolve)))
        return grants
    if body.strip():
        return await from_xml(body, resolve)
    return None


async def from_xml(body: bytes, resolve: Resolver) -> list[list[str]]:
    root = s3_xml.parse(body)
    if root.tag != "AccessControlPolicy":
        raise MalformedACLError()
    acl = root.find("AccessControlList")
    if acl is None:
        raise MalformedACLError()
    grants: list[list[str]] = []
    for grant in acl.findall("Grant"):
        grantee = grant.find("Grantee")
        permission = s3_xml.text(grant, "Permission")
        if grantee is None or permission is None:
            raise MalformedACLError()
        xtype = grantee.get(f"{{{XSI}}}type") or grantee.get("type") or ""
        ident, email, uri = (s3_xml.text(grantee, t) for t in ("ID", "EmailAddress", "URI"))
        if xtype == "Group" or (not xtype and uri):
            kind, who = "uri", uri
        elif xtype == "AmazonCustomerByEmail" or (not xtype and email):
            kind, who = "emailaddress", email
        elif xtype == "CanonicalUser" or (not xtype and ident):
            kind, who = "id", ident
        else:
            raise MalformedACLError(f"Invalid grantee type {xtype!r}")
        if not who:
            raise MalformedACLError("A grantee without its ID, EmailAddress or URI")
        grants.append(list(await _grant(kind, who, permission.strip(), resolve)))
    return grants


def document_of(owner: str, grants: Iterable[Grant], names: Mapping[str, str]) -> bytes:
    """The AccessControlPolicy document of an ACL (GetBucketAcl, GetObjectAcl)."""
    nodes: list[Node] = []
    # groups first, as S3 and RGW list them (and as clients that sort by name expect)
    for kind, who, perm in sorted(grants, key=lambda g: g[0] != "group"):
        if kind == "group":
            grantee: list[Node] = [("URI", who)]
        else:
            grantee = [("ID", who), ("DisplayName", names.get(who, who))]
        nodes.append(("Grant", [("Grantee", grantee), ("Permission", perm)]))
    body = document("AccessControlPolicy", [
        ("Owner", [("ID", owner), ("DisplayName", names.get(owner, owner))]),
        ("AccessControlList", nodes)])
    # grantees carry their xsi:type, which clients read to tell users from groups
    body = body.replace(b"<Grantee><URI>", f'<Grantee xmlns:xsi="{XSI}" xsi:type="Group"><URI>'
                        .encode())
    return body.replace(b"<Grantee><ID>", f'<Grantee xmlns:xsi="{XSI}" '
                        f'xsi:type="CanonicalUser"><ID>'.encode())


def users_in(grants: Iterable[Grant]) -> set[str]:
    return {who for kind, who, _ in grants if kind == "user"}
