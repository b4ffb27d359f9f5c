"""Swift TempURLs: a request without a token is allowed one method on one object (or on
objects under a prefix) until a time, by an HMAC of `METHOD\\nEXPIRES\\nPATH` with a key the
account (X-Account-Meta-Temp-URL-Key[-2]) or the container (X-Container-Meta-Temp-URL-Key[-2])
holds. Digests: SHA1, SHA256, SHA512, as hex or as `<digest>:<base64url>`.

The path signed is the request's path as Swift knows it (`/v1/AUTH_acct/cont/obj`); ours also
carries the `/swift` prefix of RGW's layout, so a signature over either form is accepted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from datetime import UTC, datetime

from gateway.swift_errors import SwiftError

DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
_BY_HEX_LENGTH = {40: "sha1", 64: "sha256", 128: "sha512"}
METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")


def sign(key: str, method: str, expires: int | str, path: str, digest: str = "sha256") -> str:
    """The hex signature Swift's `swift tempurl` would compute."""
    message = f"{method}\n{expires}\n{path}".encode()
    return hmac.new(key.encode(), message, DIGESTS[digest]).hexdigest()


def parse_expires(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return int(datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=UTC).timestamp())
    except ValueError:
        raise SwiftError(401, "Invalid temp_url_expires") from None


def _decode_sig(sig: str) -> tuple[str, bytes]:
    """(digest name, raw signature) of a temp_url_sig."""
    if ":" in sig:
        name, _, b64 = sig.partition(":")
        if name not in DIGESTS:
            raise SwiftError(401, "Unsupported temp_url_sig digest")
        try:
            return name, base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
        except (binascii.Error, ValueError):
            raise SwiftError(401, "Malformed temp_url_sig") from None
    name = _BY_HEX_LENGTH.get(len(sig), "")
    try:
        return name, bytes.fromhex(sig) if name else b""
    except ValueError:
        raise SwiftError(401, "Malformed temp_url_sig") from None


def signed_paths(path: str, prefix: str | None) -> list[str]:
    """The forms of the path a signature may cover: ours and Swift's (no /swift)."""
    forms = [path]
    if path.startswith("/swift/v1/"):
        forms.append(path[len("/swift"):])
    if prefix is None:
        return forms
    # a prefix signature covers "prefix:/v1/AUTH_a/c/<prefix>"
    out = []
    for form in forms:
        head = form.split("/", 4 if form.startswith("/v1/") else 5)
        base = "/".join(head[:-1]) + "/"
        out.append(f"prefix:{base}{prefix}")
    return out


def check(query: dict[str, str], method: str, path: str, obj: str, keys: Iterable[str],
          now: float) -> None:
    """Raise 401 unless the query's TempURL signature allows `method` on `path` now."""
    sig, raw_expires = query.get("temp_url_sig"), query.get("temp_url_expires")
    if not sig or not raw_expires:
        raise SwiftError(401, "Missing temp_url_sig or temp_url_expires")
    expires = parse_expires(raw_expires)
    if expires < now:
        raise SwiftError(401, "Temp URL expired")
    prefix = query.get("temp_url_prefix")
    if prefix is not None and not obj.startswith(prefix):
        raise SwiftError(401, "Object outside the signed prefix")
    name, claimed = _decode_sig(sig)
    if not name or not claimed:
        raise SwiftError(401, "Malformed temp_url_sig")
    # HEAD is allowed by a signature for GET, HEAD or PUT, as Swift does
    methods = ("HEAD", "GET", "PUT") if method == "HEAD" else (method,)
    for key in keys:
        for form in signed_paths(path, prefix):
            for m in methods:
                good = hmac.new(key.encode(), f"{m}\n{raw_expires}\n{form}".encode(),
                                DIGESTS[name]).digest()
                if hmac.compare_digest(good, claimed):
                    return
    raise SwiftError(401, "Temp URL invalid")


def disposition(query: dict[str, str], obj: str) -> str:
    """Content-Disposition of a TempURL GET: a download named after the object, unless
    `inline`; `filename=` chooses the name."""
    name = query.get("filename") or obj.rsplit("/", 1)[-1]
    safe = name.replace("\\", "\\\\").replace('"', '\\"')
    if "inline" in query:
        return f'inline; filename="{safe}"' if "filename" in query else "inline"
    return f'attachment; filename="{safe}"'
