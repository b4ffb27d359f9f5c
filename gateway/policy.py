"""Bucket policies: JSON documents as AWS writes them, checked when they are put and evaluated
for each request (access.py decides with them and the ACLs in one place).

A statement applies to a request when its principal, action, resource and every condition
match. `evaluate` answers "Deny" if any applying statement denies (an explicit deny always
wins), else "Allow" if one allows, else None (the policy says nothing: ACLs decide).

Supported as AWS documents them: Principal/NotPrincipal (`*`, {"AWS": ...} with user ids,
`arn:aws:iam::<tenant>:user/<uid>`, `arn:aws:iam::<account>:root`, {"CanonicalUser": ...}),
Action/NotAction and Resource/NotResource with `*` and `?` wildcards, policy variables
(`${aws:username}`, `${aws:userid}`, `${*}`...), and the condition operators String*, Numeric*,
Date*, Bool, IpAddress/NotIpAddress, Arn*, Null, each with ...IfExists and the
ForAnyValue:/ForAllValues: set qualifiers.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway import errors

VERSIONS = ("2012-10-17", "2008-10-17")
MAX_POLICY = 20 * 1024  # AWS's limit on a bucket policy's size
MalformedPolicy = type("MalformedPolicy", (errors.S3Error,), {
    "code": "MalformedPolicy", "status": 400, "default": "Policy has invalid structure"})


@dataclass(frozen=True)
class Principal:
    """Who sends a request: a user (uid, tenant) or nobody (anonymous)."""

    uid: str | None
    tenant: str = ""

    @property
    def anonymous(self) -> bool:
        return self.uid is None


@dataclass
class Context:
    """What a statement is matched against."""

    principal: Principal
    action: str  # s3:GetObject
    resource: str  # arn:aws:s3:::bucket/key
    keys: Mapping[str, list[str]] = field(default_factory=dict)  # condition keys, lower-case


@dataclass(frozen=True)
class Statement:
    effect: str
    principals: tuple[str, ...] | None  # None: any (Principal "*")
    not_principal: bool
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...]
    not_resource: bool
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...]  # (operator, key, values)


def _list(value: Any, what: str) -> list[Any]:
    if isinstance(value, list):
        if not value:
            raise MalformedPolicy(f"{what} must not be empty")
        return value
    return [value]


def _strings(value: Any, what: str) -> tuple[str, ...]:
    items = _list(value, what)
    if not all(isinstance(v, str) for v in items):
        raise MalformedPolicy(f"{what} must be strings")
    return tuple(items)


def _principals(value: Any) -> tuple[str, ...] | None:
    if value == "*":
        return None
    if not isinstance(value, dict) or not value:
        raise MalformedPolicy("Invalid principal in policy")
    out: list[str] = []
    for kind, ids in value.items():
        if kind not in ("AWS", "CanonicalUser", "Service", "Federated"):
            raise MalformedPolicy(f"Invalid principal type {kind!r}")
        for ident in _strings(ids, "Principal"):
            if kind == "AWS" and ident == "*":
                return None
            out.append(f"{kind}:{ident}")
    return tuple(out)


def _action(name: str) -> str:
    if name != "*" and not re.fullmatch(r"[A-Za-z0-9-]+:[A-Za-z0-9*?]+", name):
        raise MalformedPolicy(f"Invalid action {name!r}")
    return name


def _resource(arn: str) -> str:
    if arn != "*" and not arn.startswith("arn:aws:s3:"):
        raise MalformedPolicy(f"Policy has invalid resource {arn!r}")
    return arn


OPERATORS = frozenset({
    "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
    "StringLike", "StringNotLike", "NumericEquals", "NumericNotEquals", "NumericLessThan",
    "NumericLessThanEquals", "NumericGreaterThan", "NumericGreaterThanEquals", "DateEquals",
    "DateNotEquals", "DateLessThan", "DateLessThanEquals", "DateGreaterThan",
    "DateGreaterThanEquals", "Bool", "BinaryEquals", "IpAddress", "NotIpAddress", "ArnEquals",
    "ArnLike", "ArnNotEquals", "ArnNotLike", "Null"})


def _operator_name(op: str) -> tuple[str, str, bool]:
    """(set qualifier, base operator, if-exists) of a condition operator; MalformedPolicy for
    an unknown one."""
    qualifier = ""
    for q in ("ForAnyValue:", "ForAllValues:"):
        if op.startswith(q):
            qualifier, op = q[:-1], op[len(q):]
    if_exists = op.endswith("IfExists") and op != "IfExists"
    base = op[:-len("IfExists")] if if_exists else op
    if base not in OPERATORS:
        raise MalformedPolicy(f"Invalid condition operator {op!r}")
    return qualifier, base, if_exists


def _conditions(value: Any) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    if not isinstance(value, dict):
        raise MalformedPolicy("Condition must be an object")
    out = []
    for op, block in value.items():
        _operator_name(op)
        if not isinstance(block, dict):
            raise MalformedPolicy(f"Condition {op} must map keys to values")
        for key, values in block.items():
            items = _list(values, f"Condition {op} {key}")
            if not all(isinstance(v, (str, bool, int, float)) for v in items):
                raise MalformedPolicy(f"Invalid value in condition {op} {key}")
            out.append((op, key, tuple(str(v).lower() if isinstance(v, bool) else str(v)
                                       for v in items)))
    return tuple(out)


def _statement(raw: Any) -> Statement:
    if not isinstance(raw, dict):
        raise MalformedPolicy("A statement must be an object")
    known = {"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource",
             "NotResource", "Condition"}
    if set(raw) - known:
        raise MalformedPolicy(f"Unknown field {sorted(set(raw) - known)[0]!r} in a statement")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise MalformedPolicy("Effect must be Allow or Deny")
    if ("Principal" in raw) == ("NotPrincipal" in raw):
        raise MalformedPolicy("A bucket policy statement names a Principal or a NotPrincipal")
    if "NotPrincipal" in raw and effect == "Allow":
        raise MalformedPolicy("NotPrincipal is only allowed with Effect Deny")
    if ("Action" in raw) == ("NotAction" in raw):
        raise MalformedPolicy("A statement names an Action or a NotAction")
    if ("Resource" in raw) == ("NotResource" in raw):
        raise MalformedPolicy("A statement names a Resource or a NotResource")
    actions = tuple(_action(a) for a in _strings(raw.get("Action", raw.get("NotAction")),
                                                  "Action"))
    resources = tuple(_resource(r) for r in _strings(
        raw.get("Resource", raw.get("NotResource")), "Resource"))
    return Statement(effect, _principals(raw.get("Principal", raw.get("NotPrincipal"))),
                     "NotPrincipal" in raw, actions, "NotAction" in raw, resources,
                     "NotResource" in raw, _conditions(raw.get("Condition", {})))


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> tuple[Statement, ...]:
    """The statements of a policy document; MalformedPolicy with the reason otherwise."""
    if len(text.encode()) > MAX_POLICY:
        raise MalformedPolicy("Policies must be no more than 20 KB")
    try:
        doc = json.loads(text)
    except ValueError:
        raise MalformedPolicy("This policy contains invalid Json") from None
    if not isinstance(doc, dict) or "Statement" not in doc:
        raise MalformedPolicy("Missing required field Statement")
    unknown = set(doc) - {"Version", "Id", "Statement"}
    if unknown:
        raise MalformedPolicy(f"Unknown field {sorted(unknown)[0]!r}")
    if "Version" in doc and doc["Version"] not in VERSIONS:
        raise MalformedPolicy("The policy must contain a valid version string")
    return tuple(_statement(s) for s in _list(doc["Statement"], "Statement"))


# --- matching ------------------------------------------------------------------------------
def _substitute(pattern: str, ctx: Context) -> str:
    """Policy variables: ${aws:username} and friends; ${*} ${?} ${$} stand for the literal."""
    if "${" not in pattern:
        return pattern

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in ("*", "?", "$"):
            return "\0" + name  # a literal, protected from the wildcard match
        values = ctx.keys.get(name.lower())
        return values[0] if values else m.group(0)
    return re.sub(r"\$\{([^}]+)\}", repl, pattern)


@functools.lru_cache(maxsize=4096)
def _glob(pattern: str, case: bool) -> re.Pattern[str]:
    parts = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\0" and i + 1 < len(pattern):
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
        i += 1
    return re.compile("".join(parts), 0 if case else re.IGNORECASE | re.DOTALL)


def like(pattern: str, value: str, case: bool = True) -> bool:
    return _glob(pattern, case).fullmatch(value) is not None


def _principal_matches(patterns: tuple[str, ...] | None, who: Principal) -> bool:
    if patterns is None:
        return True
    if who.anonymous:
        return False
    full, tenant = who.uid or "", who.tenant
    uid = full.partition("$")[2] if "$" in full else full  # the id within its tenant
    for p in patterns:
        kind, _, ident = p.partition(":")
        if kind == "CanonicalUser" and ident in (uid, full):
            return True
        if kind != "AWS":
            continue
        if ident in (uid, full):
            return True
        m = re.fullmatch(r"arn:aws:iam::([^:]*):(root|user/(.+))", ident)
        if m is None:
            continue
        account, _, user = m.groups()
        if user is not None:
            if account == tenant and like(user, uid):
                return True
        elif account in (uid, full) or (tenant and account == tenant):
            return True
    return False


def _resource_matches(pattern: str, resource: str, ctx: Context) -> bool:
    """`arn:aws:s3:::bucket/key` names a bucket of the bucket's own tenant (RGW's reading);
    `arn:aws:s3::<tenant>:bucket/key` names one tenant's."""
    if pattern == "*":
        return True
    pattern = _substitute(pattern, ctx)
    if pattern.startswith("arn:aws:s3:::"):
        resource = "arn:aws:s3:::" + resource.split(":", 5)[-1]
    return like(pattern, resource)


def _date(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).timestamp()
    except ValueError:
        return None


def _num(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _ip_in(network: str, value: str) -> bool:
    try:
        return ipaddress.ip_address(value) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


def _compare(kind: Callable[[str], float | None], op: Callable[[float, float], bool]
             ) -> Callable[[str, str], bool]:
    def check(want: str, have: str) -> bool:
        a, b = kind(have), kind(want)
        return a is not None and b is not None and op(a, b)
    return check


_MATCHERS: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    # operator: (does the request value match one policy value, is the operator negated)
    "StringEquals": (lambda w, h: w == h, False),
    "StringNotEquals": (lambda w, h: w == h, True),
    "StringEqualsIgnoreCase": (lambda w, h: w.lower() == h.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda w, h: w.lower() == h.lower(), True),
    "StringLike": (like, False),
    "StringNotLike": (like, True),
    "ArnEquals": (lambda w, h: w == h, False),
    "ArnNotEquals": (lambda w, h: w == h, True),
    "ArnLike": (like, False),
    "ArnNotLike": (like, True),
    "BinaryEquals": (lambda w, h: w == h, False),
    "Bool": (lambda w, h: w.lower() == h.lower(), False),
    "IpAddress": (_ip_in, False),
    "NotIpAddress": (_ip_in, True),
    "NumericEquals": (_compare(_num, lambda a, b: a == b), False),
    "NumericNotEquals": (_compare(_num, lambda a, b: a == b), True),
    "NumericLessThan": (_compare(_num, lambda a, b: a < b), False),
    "NumericLessThanEquals": (_compare(_num, lambda a, b: a <= b), False),
    "NumericGreaterThan": (_compare(_num, lambda a, b: a > b), False),
    "NumericGreaterThanEquals": (_compare(_num, lambda a, b: a >= b), False),
    "DateEquals": (_compare(_date, lambda a, b: a == b), False),
    "DateNotEquals": (_compare(_date, lambda a, b: a == b), True),
    "DateLessThan": (_compare(_date, lambda a, b: a < b), False),
    "DateLessThanEquals": (_compare(_date, lambda a, b: a <= b), False),
    "DateGreaterThan": (_compare(_date, lambda a, b: a > b), False),
    "DateGreaterThanEquals": (_compare(_date, lambda a, b: a >= b), False),
}


def _condition(op: str, key: str, wanted: tuple[str, ...], ctx: Context) -> bool:
    qualifier, base, if_exists = _operator_name(op)
    have = ctx.keys.get(key.lower())
    if base == "Null":  # "true": the key must be absent
        absent = not have
        return any((w.lower() == "true") == absent for w in wanted)
    if not have:
        if qualifier == "ForAllValues":
            return True  # vacuously: every one of no values matches
        return if_exists or _MATCHERS[base][1]
    match, negated = _MATCHERS[base]
    wanted = tuple(_substitute(w, ctx) for w in wanted)

    def one(value: str) -> bool:
        return any(match(w, value) for w in wanted)
    every = qualifier == "ForAllValues"
    hit = all(one(v) for v in have) if every else any(one(v) for v in have)
    return not hit if negated else hit


def applies(st: Statement, ctx: Context) -> bool:
    if _principal_matches(st.principals, ctx.principal) == st.not_principal:
        return False
    action_hit = any(like(a, ctx.action, case=False) for a in st.actions)
    if action_hit == st.not_action:
        return False
    resource_hit = any(_resource_matches(r, ctx.resource, ctx) for r in st.resources)
    if resource_hit == st.not_resource:
        return False
    return all(_condition(op, key, values, ctx) for op, key, values in st.conditions)


def evaluate(text: str, ctx: Context) -> str | None:
    """"Deny", "Allow" or None (the policy does not speak to this request)."""
    allowed = False
    for st in parse(text):
        if applies(st, ctx):
            if st.effect == "Deny":
                return "Deny"
            allowed = True
    return "Allow" if allowed else None


def is_public(text: str) -> bool:
    """Whether a policy grants anything to everyone (AWS's test for BlockPublicPolicy and
    PolicyStatus): an Allow to any principal without a condition that pins the caller."""
    pinning = {"aws:sourceip", "aws:sourcearn", "aws:sourcevpc", "aws:sourcevpce",
               "aws:sourceaccount", "aws:sourceowner", "aws:principalaccount",
               "aws:principalarn", "aws:userid", "s3:x-amz-server-side-encryption-aws-kms-key-id"}
    for st in parse(text):
        if st.effect != "Allow" or (st.principals is not None and not st.not_principal):
            continue
        if any(key.lower() in pinning for _, key, _ in st.conditions):
            continue
        return True
    return False
