"""The checksums S3 clients send with uploads (`x-amz-checksum-<alg>` in a header or an
aws-chunked trailer) and Content-MD5: running digests, compared base64 as S3 writes them."""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from typing import Protocol

import crc32c as _crc32c

from gateway import errors

ALGORITHMS = ("crc32", "crc32c", "sha1", "sha256")
HEADER_PREFIX = "x-amz-checksum-"


class Digest(Protocol):
    def update(self, data: bytes) -> None: ...
    def digest(self) -> bytes: ...


class _Crc:
    def __init__(self, fn: object) -> None:
        self.fn = fn
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = self.fn(data, self.value)  # type: ignore[operator]

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def new(algorithm: str) -> Digest:
    if algorithm == "crc32":
        return _Crc(zlib.crc32)
    if algorithm == "crc32c":
        return _Crc(_crc32c.crc32c)
    if algorithm in ("sha1", "sha256"):
        return hashlib.new(algorithm)
    raise errors.InvalidRequest(f"Unsupported checksum algorithm {algorithm!r}: "
                                f"{', '.join(ALGORITHMS)} are supported")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def decode_b64(value: str, what: str, error: type[errors.S3Error]) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise error(f"{what} is not valid base64") from None


def announced(headers: dict[str, str]) -> tuple[str, str | None] | None:
    """(algorithm, header value or None when it comes as a trailer) the request announces."""
    trailer = headers.get("x-amz-trailer", "").strip().lower()
    if trailer.startswith(HEADER_PREFIX):
        return trailer[len(HEADER_PREFIX):], None
    for name, value in headers.items():
        if name.startswith(HEADER_PREFIX) and name not in ("x-amz-checksum-algorithm",
                                                          "x-amz-checksum-mode",
                                                          "x-amz-checksum-type"):
            return name[len(HEADER_PREFIX):], value
    return None
