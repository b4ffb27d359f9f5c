"""Decoding an `aws-chunked` request body (SigV4 streaming uploads) while it arrives.

    <hex size>[;chunk-signature=<sig>]\\r\\n <data> \\r\\n     ... repeated, then
    0[;chunk-signature=<sig>]\\r\\n                           the last, empty chunk
    <name>:<value>\\r\\n ...                                  trailers (x-amz-checksum-*),
    [x-amz-trailer-signature:<sig>\\r\\n]                     signed for the -TRAILER variant
    \\r\\n

Data is passed on in pieces as it comes (a chunk is never held whole), while each chunk's
SHA-256 is computed on the way so its signature can be checked when it ends. A body that breaks
the format or a signature is refused; the caller commits nothing before the end, so data passed
on before a failure is never visible.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Protocol

from gateway import errors
from gateway.sigv4 import EMPTY_SHA256, ChunkSigner, signature

MAX_LINE = 4096
MAX_TRAILERS = 16
PIECE = 1 << 20  # bytes passed on at a time: memory stays bounded whatever the chunk size


class Source(Protocol):
    async def readline(self) -> bytes: ...
    async def read(self, n: int) -> bytes: ...
    async def readexactly(self, n: int) -> bytes: ...


async def _line(source: Source) -> bytes:
    line = await source.readline()
    if len(line) > MAX_LINE:
        raise errors.IncompleteBody("aws-chunked line too long")
    return line


async def _exactly(source: Source, n: int) -> AsyncIterator[bytes]:
    while n > 0:
        try:  # whole pieces (not whatever arrived): fewer, bigger hash updates downstream
            piece = await source.readexactly(min(n, PIECE))
        except asyncio.IncompleteReadError:
            raise errors.IncompleteBody("The request body ended inside an aws-chunked "
                                        "chunk") from None
        n -= len(piece)
        yield piece


def _parse_header(line: bytes, signed: bool) -> tuple[int, str]:
    text = line.rstrip(b"\r\n").decode("ascii", "replace")
    size_text, _, ext = text.partition(";")
    try:
        size = int(size_text.strip(), 16)
    except ValueError:
        raise errors.IncompleteBody(f"Bad aws-chunked chunk header {text[:80]!r}") from None
    sig = ""
    if ext:
        name, _, value = ext.partition("=")
        if name.strip() == "chunk-signature":
            sig = value.strip()
    if signed and not sig:
        raise errors.SignatureDoesNotMatch("A chunk of a signed streaming upload carries no "
                                           "chunk-signature")
    if size < 0:
        raise errors.IncompleteBody("Negative chunk size")
    return size, sig


async def decode(source: Source, signer: ChunkSigner | None,
                 trailers: dict[str, str]) -> AsyncIterator[bytes]:
    """The payload of an aws-chunked body; checks chunk signatures when `signer` is given and
    fills `trailers` (lower-case names) once the body ends."""
    while True:
        line = await _line(source)
        if not line:
            raise errors.IncompleteBody("The request body ended before its last chunk")
        size, sig = _parse_header(line, signer is not None)
        digest = hashlib.sha256()
        async for piece in _exactly(source, size):
            if signer is not None:
                digest.update(piece)
            yield piece
        if signer is not None:
            _check_chunk(signer, digest.hexdigest(), sig)
        if size == 0:
            break
        if await source.read(2) != b"\r\n":
            # a short read of the CRLF is as wrong as a wrong CRLF
            raise errors.IncompleteBody("An aws-chunked chunk does not end with CRLF")
    signed_lines = b""
    while True:
        line = await _line(source)
        if line in (b"", b"\r\n", b"\n"):
            break
        name, colon, value = line.rstrip(b"\r\n").decode("utf-8", "replace").partition(":")
        name = name.strip().lower()
        if not colon or len(trailers) >= MAX_TRAILERS:
            raise errors.IncompleteBody("Malformed trailer in an aws-chunked body")
        if name == "x-amz-trailer-signature":
            if signer is not None:
                signer.check_trailer(signed_lines, value.strip())
            continue
        trailers[name] = value.strip()
        signed_lines += f"{name}:{value.strip()}\n".encode()


def _check_chunk(signer: ChunkSigner, data_sha256: str, claimed: str) -> None:
    text = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", signer.amz_date, signer.scope,
                      signer.previous, EMPTY_SHA256, data_sha256])
    expected = signature(signer.key, text)
    if not hmac.compare_digest(expected, claimed.lower()):
        raise errors.SignatureDoesNotMatch("The chunk signature does not match")
    signer.previous = expected


def encode(data: bytes, chunk_size: int, signer: ChunkSigner | None = None,
           trailers: dict[str, str] | None = None) -> bytes:
    """The aws-chunked form of `data` (as SDKs send it): for tests and tools."""
    out = bytearray()
    pieces = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    for piece in pieces:
        ext = f";chunk-signature={signer.chunk(piece)}" if signer else ""
        if signer is not None:
            signer.previous = signer.chunk(piece)
        out += f"{len(piece):x}{ext}\r\n".encode() + piece + (b"\r\n" if piece else b"")
    lines = b"".join(f"{k}:{v}\n".encode() for k, v in (trailers or {}).items())
    for k, v in (trailers or {}).items():
        out += f"{k}:{v}\r\n".encode()
    if signer is not None and trailers:
        out += f"x-amz-trailer-signature:{signer.trailer(lines)}\r\n".encode()
    out += b"\r\n"
    return bytes(out)
