"""AWS Signature Version 4 for S3, as pure functions: parse the credentials of a request (header
or presigned query), rebuild its canonical request and compare signatures; sign the chunks and
the trailer of a streaming (aws-chunked) upload.

No I/O here: the server hands in the method, the raw path and query, the headers and the clock,
and gets back what to check or an S3Error. The path is decoded once and re-encoded with SigV4's
own rules (S3 does not double-encode), so a client that escapes more or fewer characters than
required still matches.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from gateway import errors

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING = (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER)
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600
_HEX64 = re.compile(r"[0-9a-f]{64}")
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Credentials:
    """What a request claims: who signed it, for which scope, over which headers."""

    access_key: str
    date: str  # yyyymmdd of the scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str  # yyyymmddThhmmssZ of the request
    presigned: bool = False
    expires: int = 0  # presigned: seconds of validity from amz_date

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def uri_encode(text: str, slash: bool = True) -> str:
    """SigV4's encoding: everything but unreserved characters (and '/' in a path) as %XX."""
    return quote(text, safe="-_.~/" if slash else "-_.~")


def parse_amz_date(value: str) -> datetime:
    try:
        return datetime.strptime(value, _AMZ_DATE).replace(tzinfo=UTC)
    except ValueError:
        raise errors.AccessDenied("AWS authentication requires a valid Date or x-amz-date "
                                  "header") from None


def _parse_credential(value: str, error: type[errors.S3Error]) -> tuple[str, ...]:
    parts = value.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not re.fullmatch(r"\d{8}", parts[1]):
        raise error(f"The credential {value!r} is not of the form "
                    "<key>/<yyyymmdd>/<region>/<service>/aws4_request")
    return tuple(parts[:4])


def from_header(authorization: str, amz_date: str) -> Credentials:
    """`AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`."""
    algo, _, rest = authorization.strip().partition(" ")
    if algo != ALGORITHM:
        raise errors.AuthorizationHeaderMalformed(f"Unsupported authorization type {algo!r}")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, eq, value = item.strip().partition("=")
        if eq:
            fields[name.strip()] = value.strip()
    missing = [f for f in ("Credential", "SignedHeaders", "Signature") if f not in fields]
    if missing:
        raise errors.AuthorizationHeaderMalformed(f"The authorization header misses "
                                                  f"{', '.join(missing)}")
    key, date, region, service = _parse_credential(fields["Credential"],
                                                   errors.AuthorizationHeaderMalformed)
    if not amz_date:
        raise errors.AccessDenied("AWS authentication requires a valid Date or x-amz-date "
                                  "header")
    return Credentials(key, date, region, service,
                       tuple(fields["SignedHeaders"].lower().split(";")),
                       fields["Signature"].lower(), amz_date)


def from_query(query: dict[str, str]) -> Credentials:
    """A presigned URL's X-Amz-* parameters."""
    need = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
            "X-Amz-SignedHeaders", "X-Amz-Signature")
    missing = [n for n in need if n not in query]
    if missing:
        raise errors.AuthorizationQueryParametersError(
            f"Query-string authentication version 4 requires the {', '.join(missing)} "
            "parameters")
    if query["X-Amz-Algorithm"] != ALGORITHM:
        raise errors.AuthorizationQueryParametersError(
            f"X-Amz-Algorithm only supports {ALGORITHM}")
    try:
        expires = int(query["X-Amz-Expires"])
    except ValueError:
        raise errors.AuthorizationQueryParametersError(
            "X-Amz-Expires should be a number") from None
    if expires < 0:
        raise errors.AccessDenied("X-Amz-Expires must be non-negative")
    if expires > MAX_PRESIGN_EXPIRES:
        raise errors.AccessDenied("X-Amz-Expires must be less than a week (in seconds) that "
                                  "is 604800")
    key, date, region, service = _parse_credential(query["X-Amz-Credential"],
                                                   errors.AuthorizationQueryParametersError)
    return Credentials(key, date, region, service,
                       tuple(query["X-Amz-SignedHeaders"].lower().split(";")),
                       query["X-Amz-Signature"].lower(), query["X-Amz-Date"], True, expires)


def check_time(creds: Credentials, now: datetime, max_skew: float) -> None:
    """Expired presigned URLs and clocks too far apart are refused (replay bound)."""
    when = parse_amz_date(creds.amz_date)
    if creds.amz_date[:8] != creds.date:
        raise errors.SignatureDoesNotMatch("The credential date does not match x-amz-date")
    if creds.presigned:
        if (now - when).total_seconds() > creds.expires:
            raise errors.AccessDenied("Request has expired", X_Amz_Expires=str(creds.expires),
                                      Expires=creds.amz_date, ServerTime=now.strftime(
                                          "%Y-%m-%dT%H:%M:%SZ"))
        if (when - now).total_seconds() > max_skew:
            raise errors.AccessDenied("Request is not valid yet")
    elif abs((now - when).total_seconds()) > max_skew:
        raise errors.RequestTimeTooSkewed(RequestTime=creds.amz_date,
                                          ServerTime=now.strftime(_AMZ_DATE))


def canonical_query(pairs: Iterable[tuple[str, str]], drop_signature: bool) -> str:
    """Decoded (name, value) pairs, encoded and sorted as SigV4 wants them."""
    encoded = sorted((uri_encode(k, False), uri_encode(v, False)) for k, v in pairs
                     if not (drop_signature and k == "X-Amz-Signature"))
    return "&".join(f"{k}={v}" for k, v in encoded)


def split_query(raw_query: str) -> list[tuple[str, str]]:
    """The raw query string as decoded pairs, in order; a name without '=' has value ''."""
    pairs = []
    for item in raw_query.split("&") if raw_query else ():
        name, _, value = item.partition("=")
        pairs.append((unquote(name), unquote(value)))
    return pairs


def canonical_request(method: str, raw_path: str, query: list[tuple[str, str]],
                      headers: dict[str, str], signed: tuple[str, ...], payload_hash: str,
                      presigned: bool) -> str:
    """`headers` maps lower-case names to their values (repeats already joined by ',')."""
    missing = [h for h in signed if h not in headers]
    if missing or "host" not in signed:
        raise errors.SignatureDoesNotMatch(
            "SignedHeaders must include host and only headers present in the request")
    path = uri_encode(unquote(raw_path, errors="surrogateescape"), True) if raw_path else "/"
    lines = [f"{h}:{_SPACES.sub(' ', headers[h].strip())}\n" for h in signed]
    return "\n".join([method, path, canonical_query(query, presigned), "".join(lines),
                      ";".join(signed), payload_hash])


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(("AWS4" + secret).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def string_to_sign(creds: Credentials, canonical: str) -> str:
    return "\n".join([ALGORITHM, creds.amz_date, creds.scope,
                      hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()])


def signature(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def verify(creds: Credentials, secret: str, canonical: str) -> bytes:
    """Check the request's signature; the signing key (for chunk signatures) when it holds."""
    key = signing_key(secret, creds.date, creds.region, creds.service)
    expected = signature(key, string_to_sign(creds, canonical))
    if not hmac.compare_digest(expected, creds.signature):
        raise errors.SignatureDoesNotMatch()
    return key


def payload_hash_for(header: str | None, presigned: bool, has_body: bool) -> str:
    """The payload hash that went into the canonical request (x-amz-content-sha256)."""
    if presigned:
        return header or UNSIGNED
    if header is None:
        if has_body:
            raise errors.InvalidRequest("Missing required header for this request: "
                                        "x-amz-content-sha256")
        return EMPTY_SHA256
    if header in (UNSIGNED, *STREAMING) or _HEX64.fullmatch(header):
        return header
    raise errors.InvalidArgument("x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                                 "STREAMING-... or a SHA-256 hex digest")


@dataclass
class ChunkSigner:
    """The running signature of an aws-chunked body: each chunk's signature covers the one
    before it, the first the request's own ("seed")."""

    key: bytes
    amz_date: str
    scope: str
    previous: str

    def chunk(self, data: bytes) -> str:
        text = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", self.amz_date, self.scope, self.previous,
                          EMPTY_SHA256, hashlib.sha256(data).hexdigest()])
        return signature(self.key, text)

    def trailer(self, trailer_lines: bytes) -> str:
        text = "\n".join(["AWS4-HMAC-SHA256-TRAILER", self.amz_date, self.scope, self.previous,
                          hashlib.sha256(trailer_lines).hexdigest()])
        return signature(self.key, text)

    def check_trailer(self, trailer_lines: bytes, claimed: str) -> None:
        if not hmac.compare_digest(self.trailer(trailer_lines), claimed.lower()):
            raise errors.SignatureDoesNotMatch("The trailer signature does not match")
