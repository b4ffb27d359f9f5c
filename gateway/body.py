"""A request body as verified pieces: aws-chunked decoding, the declared length, the signed
payload hash, Content-MD5 and x-amz-checksum-* all checked, the last of them when the body
ends. The store consumes the pieces and commits only after the iteration finished without an
error, so a body that fails any check (or a client that goes away) never becomes an object.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

from gateway import checksums, chunked, errors
from gateway.sigv4 import STREAMING, STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, ChunkSigner

PIECE = 1 << 20
OFFLOAD = 256 * 1024  # pieces at least this big are hashed off the event loop


def _update(digests: list[Any], piece: bytes) -> None:
    for d in digests:
        d.update(piece)


async def expect_continue(request: Any) -> None:
    """Answer `Expect: 100-continue` with `100 Continue`, once, when the body is about to be
    read: only a request that passed its checks gets it (one refused earlier gets its final
    answer instead, as S3 does). Other Expect values are ignored, as S3 ignores them."""
    if request.get("continued") or request.version < (1, 1):
        return
    request["continued"] = True
    if request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer proper has not begun


class _Guarded:
    """The request stream, with a client that went away reported as an incomplete body (a
    400 nobody reads, logged as such) instead of an unexpected error; `100 Continue` is sent
    before the first read (expect_continue)."""

    def __init__(self, source: chunked.Source, request: Any = None) -> None:
        self.source = source
        self.request = request

    async def _start(self) -> None:
        if self.request is not None:
            await expect_continue(self.request)
            self.request = None

    async def readline(self) -> bytes:
        await self._start()
        try:
            return await self.source.readline()
        except (ConnectionError, HttpProcessingError) as exc:
            raise errors.IncompleteBody(f"The request body was cut short: {exc}") from None

    async def read(self, n: int) -> bytes:
        await self._start()
        try:
            return await self.source.read(n)
        except (ConnectionError, HttpProcessingError) as exc:
            raise errors.IncompleteBody(f"The request body was cut short: {exc}") from None

    async def readexactly(self, n: int) -> bytes:
        await self._start()
        try:
            return await self.source.readexactly(n)
        except (ConnectionError, HttpProcessingError) as exc:
            raise errors.IncompleteBody(f"The request body was cut short: {exc}") from None


class Body:
    """`async for piece in body.pieces()`; then `size`, `md5`, `checksum` describe the data."""

    def __init__(self, source: chunked.Source, headers: Mapping[str, str], payload_hash: str,
                 signer: ChunkSigner | None, max_size: int, request: Any = None) -> None:
        self.source = _Guarded(source, request)
        self.headers = headers
        self.payload_hash = payload_hash
        self.signer = signer
        self.max_size = max_size
        self.size = 0
        self.md5 = ""
        self.checksum: tuple[str, str] | None = None  # (algorithm, base64) when sent
        encoding = headers.get("content-encoding", "")
        # Content-Encoding: aws-chunked alone does not make a body chunked (clients send it
        # with plain bodies too): a streaming payload hash or a decoded length does
        self.is_chunked = payload_hash in STREAMING or (
            "aws-chunked" in encoding.lower() and "x-amz-decoded-content-length" in headers)
        self.expected = self._declared_length()
        if self.expected is not None and self.expected > max_size:
            raise errors.EntityTooLarge(ProposedSize=str(self.expected),
                                        MaxSizeAllowed=str(max_size))
        self.content_md5 = None
        if "content-md5" in headers:
            raw = checksums.decode_b64(headers["content-md5"], "Content-MD5",
                                       errors.InvalidDigest)
            if len(raw) != 16:
                raise errors.InvalidDigest()
            self.content_md5 = raw
        self.announced = checksums.announced(dict(headers))
        self._digest = checksums.new(self.announced[0]) if self.announced else None

    def _declared_length(self) -> int | None:
        name = "x-amz-decoded-content-length" if self.is_chunked else "content-length"
        value = self.headers.get(name)
        if value is None:
            if not self.is_chunked and "transfer-encoding" not in self.headers:
                return 0
            return None
        try:
            length = int(value)
        except ValueError:
            raise errors.InvalidArgument(f"{name} must be a number") from None
        if length < 0:
            raise errors.InvalidArgument(f"{name} must not be negative")
        return length

    async def _raw(self) -> AsyncIterator[bytes]:
        if self.expected is not None:  # whole pieces: fewer, bigger hash updates
            left = self.expected
            while left > 0:
                try:
                    piece = await self.source.readexactly(min(left, PIECE))
                except asyncio.IncompleteReadError as exc:
                    self.size += len(exc.partial)
                    raise errors.IncompleteBody() from None
                left -= len(piece)
                yield piece
            # anything after the declared length is a longer body than declared
            if await self.source.read(1):
                raise errors.InvalidRequest("The body is longer than its declared length")
            return
        while True:
            piece = await self.source.read(PIECE)
            if not piece:
                return
            yield piece

    async def pieces(self) -> AsyncIterator[bytes]:
        trailers: dict[str, str] = {}
        signed = self.signer if self.payload_hash in (STREAMING_SIGNED,
                                                      STREAMING_SIGNED_TRAILER) else None
        stream = (chunked.decode(self.source, signed, trailers) if self.is_chunked
                  else self._raw())
        md5 = hashlib.md5()
        sha = hashlib.sha256() if len(self.payload_hash) == 64 else None
        async for piece in stream:
            self.size += len(piece)
            if self.size > self.max_size or (self.expected is not None
                                             and self.size > self.expected):
                if self.size > self.max_size:
                    raise errors.EntityTooLarge(MaxSizeAllowed=str(self.max_size))
                raise errors.InvalidRequest("The body is longer than its declared length")
            digests = [d for d in (md5, sha, self._digest) if d is not None]
            if len(piece) >= OFFLOAD:
                # hashlib and zlib let go of the GIL on big buffers: other requests go on
                await asyncio.to_thread(_update, digests, piece)
            else:
                _update(digests, piece)
            yield piece
        if self.expected is not None and self.size != self.expected:
            raise errors.IncompleteBody()
        if sha is not None and sha.hexdigest() != self.payload_hash:
            raise errors.XAmzContentSHA256Mismatch(
                ClientComputedContentSHA256=self.payload_hash,
                S3ComputedContentSHA256=sha.hexdigest())
        raw_md5 = md5.digest()
        if self.content_md5 is not None and not hmac.compare_digest(raw_md5, self.content_md5):
            raise errors.BadDigest()
        self.md5 = raw_md5.hex()
        self._check_checksum(trailers)

    def _check_checksum(self, trailers: dict[str, str]) -> None:
        if self.announced is None or self._digest is None:
            return
        algorithm, value = self.announced
        if value is None:
            value = trailers.get(checksums.HEADER_PREFIX + algorithm)
            if value is None:
                raise errors.InvalidRequest(f"The x-amz-checksum-{algorithm} trailer announced "
                                            "by x-amz-trailer was not sent")
        claimed = checksums.decode_b64(value, f"x-amz-checksum-{algorithm}",
                                       errors.InvalidChecksum)
        computed = self._digest.digest()
        if not hmac.compare_digest(claimed, computed):
            raise errors.BadChecksum(f"Value for x-amz-checksum-{algorithm} header is invalid.")
        self.checksum = (algorithm, base64.b64encode(computed).decode())
