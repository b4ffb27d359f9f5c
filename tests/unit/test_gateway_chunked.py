"""aws-chunked bodies: AWS's streaming example (seed and chunk signatures), the unsigned
trailer form boto3 sends over HTTPS, checksums, and bodies that break the format."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import zlib

import pytest

from gateway import chunked, errors, sigv4
from gateway.body import Body

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
SCOPE = "20130524/us-east-1/s3/aws4_request"


class Source:
    """An aiohttp StreamReader's readline/read over bytes, fed in small pieces."""

    def __init__(self, data: bytes, piece: int = 7000) -> None:
        self.data = data
        self.pos = 0
        self.piece = piece

    async def readline(self) -> bytes:
        end = self.data.find(b"\n", self.pos)
        end = len(self.data) if end < 0 else end + 1
        line, self.pos = self.data[self.pos:end], end
        return line

    async def read(self, n: int) -> bytes:
        n = min(n, self.piece)
        out, self.pos = self.data[self.pos:self.pos + n], min(len(self.data), self.pos + n)
        return out

    async def readexactly(self, n: int) -> bytes:
        out, self.pos = self.data[self.pos:self.pos + n], min(len(self.data), self.pos + n)
        if len(out) < n:
            raise asyncio.IncompleteReadError(out, n)
        return out


def signer() -> sigv4.ChunkSigner:
    key = sigv4.signing_key(SECRET, "20130524", "us-east-1", "s3")
    return sigv4.ChunkSigner(key, "20130524T000000Z", SCOPE, SEED)


def decode(body: bytes, sign: sigv4.ChunkSigner | None) -> tuple[bytes, dict[str, str]]:
    trailers: dict[str, str] = {}

    async def go() -> bytes:
        return b"".join([p async for p in chunked.decode(Source(body), sign, trailers)])
    return asyncio.run(go()), trailers


def test_aws_streaming_example_signatures() -> None:
    """The seed signature of AWS's example request, then its three chunk signatures."""
    headers = {"host": "s3.amazonaws.com", "x-amz-date": "20130524T000000Z",
               "x-amz-storage-class": "REDUCED_REDUNDANCY",
               "x-amz-content-sha256": sigv4.STREAMING_SIGNED, "content-encoding": "aws-chunked",
               "x-amz-decoded-content-length": "66560", "content-length": "66824"}
    signed = ("content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
              "x-amz-decoded-content-length;x-amz-storage-class")
    creds = sigv4.from_header(f"AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/{SCOPE},"
                              f"SignedHeaders={signed},Signature={SEED}", headers["x-amz-date"])
    canonical = sigv4.canonical_request("PUT", "/examplebucket/chunkObject.txt", [], headers,
                                        creds.signed_headers, sigv4.STREAMING_SIGNED, False)
    sigv4.verify(creds, SECRET, canonical)
    s = signer()
    expected = ["ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
                "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
                "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"]
    for data, sig in zip([b"a" * 65536, b"a" * 1024, b""], expected, strict=True):
        assert s.chunk(data) == sig
        s.previous = sig
    body = chunked.encode(b"a" * 66560, 65536, signer())
    assert len(body) == 66824  # the example's Content-Length
    data, _ = decode(body, signer())
    assert data == b"a" * 66560


def test_a_tampered_chunk_is_refused() -> None:
    body = bytearray(chunked.encode(b"a" * 66560, 65536, signer()))
    body[200] = ord("b")
    with pytest.raises(errors.SignatureDoesNotMatch):
        decode(bytes(body), signer())


def test_signed_trailer_is_checked() -> None:
    data = b"hello world" * 1000
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    body = chunked.encode(data, 4096, signer(), {"x-amz-checksum-crc32": crc})
    out, trailers = decode(body, signer())
    assert out == data and trailers == {"x-amz-checksum-crc32": crc}
    forged = body.replace(crc.encode(), b"AAAAAA==")
    with pytest.raises(errors.SignatureDoesNotMatch):
        decode(forged, signer())


def unsigned_trailer_body(data: bytes, checksum: str) -> bytes:
    """As botocore's AwsChunkedWrapper writes it."""
    out = b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + 1000]), data[i:i + 1000])
                   for i in range(0, len(data), 1000))
    return out + b"0\r\nx-amz-checksum-crc32:%s\r\n\r\n" % checksum.encode()


def run_body(raw: bytes, headers: dict[str, str], payload: str) -> Body:
    body = Body(Source(raw), headers, payload, None, 1 << 30)

    async def go() -> None:
        async for _ in body.pieces():
            pass
    asyncio.run(go())
    return body


def test_unsigned_trailer_with_crc32_as_boto3_sends_it() -> None:
    data = bytes(range(256)) * 50
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    headers = {"content-encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32",
               "x-amz-decoded-content-length": str(len(data)), "transfer-encoding": "chunked"}
    body = run_body(unsigned_trailer_body(data, crc), headers, sigv4.STREAMING_UNSIGNED_TRAILER)
    assert body.size == len(data) and body.md5 == hashlib.md5(data).hexdigest()
    assert body.checksum == ("crc32", crc)
    with pytest.raises(errors.S3Error) as err:
        run_body(unsigned_trailer_body(data, "AAAAAA=="), headers,
                 sigv4.STREAMING_UNSIGNED_TRAILER)
    assert err.value.code == "BadDigest"


@pytest.mark.parametrize("algorithm", ["crc32", "crc32c", "sha1", "sha256"])
def test_checksum_headers(algorithm: str) -> None:
    from gateway import checksums

    data = b"x" * 10000
    digest = checksums.new(algorithm)
    digest.update(data)
    value = base64.b64encode(digest.digest()).decode()
    headers = {"content-length": str(len(data)), f"x-amz-checksum-{algorithm}": value}
    assert run_body(data, headers, sigv4.UNSIGNED).checksum == (algorithm, value)
    headers[f"x-amz-checksum-{algorithm}"] = base64.b64encode(b"\0" * len(
        digest.digest())).decode()
    with pytest.raises(errors.S3Error, match="checksum"):
        run_body(data, headers, sigv4.UNSIGNED)


def test_content_md5_and_payload_sha256() -> None:
    data = b"payload"
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    run_body(data, {"content-length": "7", "content-md5": md5},
             hashlib.sha256(data).hexdigest())
    with pytest.raises(errors.BadDigest):
        run_body(data, {"content-length": "7",
                        "content-md5": base64.b64encode(b"0" * 16).decode()}, sigv4.UNSIGNED)
    with pytest.raises(errors.XAmzContentSHA256Mismatch):
        run_body(data, {"content-length": "7"}, "0" * 64)


@pytest.mark.parametrize("raw", [
    b"zz\r\nabc\r\n0\r\n\r\n",  # not hex
    b"10\r\nabc",  # ends inside a chunk
    b"3\r\nabcXY0\r\n\r\n",  # no CRLF after the data
    b"3\r\nabc\r\n",  # no last chunk
])
def test_broken_bodies_are_refused(raw: bytes) -> None:
    with pytest.raises(errors.S3Error):
        decode(raw, None)


def test_short_body_is_incomplete() -> None:
    with pytest.raises(errors.IncompleteBody):
        run_body(b"abc", {"content-length": "10"}, sigv4.UNSIGNED)
