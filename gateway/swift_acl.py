"""Swift container ACLs (X-Container-Read / X-Container-Write), as tempauth reads them.

An ACL is a comma-separated list of grants:

    .r:*            anyone, even without a token, may read objects (not list)
    .rlistings      with .r:*: anyone may also list the container
    acct:user       that Swift user          acct:*    every user of that account
    *:user          that user of any account *  or *:*  every authenticated user
    acct            every user of that account

Referrer grants other than `.r:*` (.r:example.com, .r:-host) are kept as written but grant
nothing: there is no trustworthy referrer to check them against.
"""

from __future__ import annotations

from gateway.swift_errors import SwiftError

MAX_ACL = 4096


def parse(value: str) -> list[str]:
    return [g.strip() for g in value.split(",") if g.strip()]


def clean(value: str) -> str:
    """The ACL as stored: grants normalised and checked; 400 for a malformed one."""
    if len(value) > MAX_ACL:
        raise SwiftError(400, "ACL too long")
    out = []
    for grant in parse(value):
        if grant.startswith(".") and not (grant.startswith(".r:") or grant == ".rlistings"):
            if grant.startswith((".ref:", ".referer:", ".referrer:")):
                grant = ".r:" + grant.split(":", 1)[1]
            else:
                raise SwiftError(400, f"Unknown designator {grant.split(':')[0]!r} in ACL")
        if grant.startswith(".r:") and not grant[3:].strip():
            raise SwiftError(400, "No host/domain value after referrer designation in ACL")
        if any(c.isspace() or ord(c) < 32 for c in grant):
            raise SwiftError(400, "Malformed ACL")
        out.append(grant)
    return ",".join(out)


def anyone_reads(acl: str) -> bool:
    return ".r:*" in parse(acl)


def anyone_lists(acl: str) -> bool:
    grants = parse(acl)
    return ".r:*" in grants and ".rlistings" in grants


def grants(acl: str, swift_user: str) -> bool:
    """Whether the ACL names `swift_user` ("account:user") itself or a group it is in."""
    if not swift_user:
        return False
    account, _, user = swift_user.partition(":")
    wanted = {swift_user, f"{account}:*", f"*:{user}", "*", "*:*", account}
    return any(g in wanted for g in parse(acl))
