"""S3 server-side encryption: SSE-C (the client's key, sent with every request and never
stored: only its MD5 is kept to recognise it), SSE-S3 and SSE-KMS (a random data key per
object, stored wrapped by the gateway's master key - `gateway_sse_master_key`, or one made on
first use and kept in the meta pool; a KMS key id picks a key derived from the master key),
and a bucket's default encryption (Get/Put/DeleteBucketEncryption).

Data is encrypted in the gateway, before it goes to RADOS, with AES-256 in CTR mode: any byte
range can be decrypted on its own (the counter of byte N is the IV plus N // 16), so ranged
GETs read only what they return. Each part of a multipart upload has its own IV (derived from
the upload's IV and the part number) and is decrypted from where it starts in the object.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway import errors, s3_xml
from gateway.buckets import Bucket
from gateway.context import S3Request, Services
from gateway.s3_buckets import xml_response
from gateway.s3_xml import Node, document
from rados_py.errors import AlreadyExists
from rados_py.rados import ObjectOp

PREFIX = "x-amz-server-side-encryption"
CUSTOMER = PREFIX + "-customer-"
COPY_CUSTOMER = "x-amz-copy-source-server-side-encryption-customer-"
KMS_ID = PREFIX + "-aws-kms-key-id"
MASTER_OID = "sse.master"
NoSuchEncryption = type("ServerSideEncryptionConfigurationNotFoundError", (errors.S3Error,), {
    "code": "ServerSideEncryptionConfigurationNotFoundError", "status": 404,
    "default": "The server side encryption configuration was not found"})

Sse = dict[str, Any]  # {"alg": "C"|"S3"|"KMS", "iv": b64, "kmd5": b64 (C), "wrapped": b64
#                       (S3, KMS), "kms": key id (KMS)}


def _b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise errors.InvalidArgument(f"{what} is not valid base64") from None


def customer_key(headers: dict[str, str], prefix: str = CUSTOMER) -> tuple[bytes, str] | None:
    """(key, its base64 MD5) of SSE-C headers; None without any; InvalidArgument when they
    are incomplete, not AES256, not 256 bits or not matching their MD5."""
    alg, key, md5 = (headers.get(prefix + n) for n in ("algorithm", "key", "key-md5"))
    if alg is None and key is None and md5 is None:
        return None
    if alg != "AES256":
        raise errors.InvalidArgument("The encryption algorithm must be AES256" if alg else
                                     "Requests specifying Server Side Encryption with Customer "
                                     "provided keys must provide a valid encryption algorithm.",
                                     ArgumentName=prefix + "algorithm")
    if key is None or md5 is None:
        raise errors.InvalidArgument("Requests specifying Server Side Encryption with Customer "
                                     "provided keys must provide the key and its MD5.",
                                     ArgumentName=prefix + ("key" if key is None else "key-MD5"))
    raw = _b64decode(key, "The customer key")
    if len(raw) != 32:
        raise errors.InvalidArgument("The secret key was invalid for the specified algorithm.",
                                     ArgumentName=prefix + "key")
    digest = base64.b64encode(hashlib.md5(raw).digest()).decode()
    if digest != md5.strip():
        raise errors.InvalidArgument("The calculated MD5 hash of the key did not match the "
                                     "hash that was provided.", ArgumentName=prefix + "key-MD5")
    return raw, digest


async def _master(svc: Services) -> bytes:
    if svc.sse_key is None:
        meta = svc.meta
        fresh = os.urandom(32)
        try:  # the first gateway to need it makes it; the others read it
            await meta.operate(MASTER_OID, ObjectOp().create(True).write_full(fresh))
            svc.sse_key = fresh
        except AlreadyExists:
            svc.sse_key = await meta.read(MASTER_OID)
    return svc.sse_key


async def _kek(svc: Services, kms_id: str | None) -> bytes:
    master = await _master(svc)
    return hmac.new(master, (kms_id or "").encode(), hashlib.sha256).digest()


async def new_sse(req: S3Request, bucket: Bucket, headers: dict[str, str]) -> Sse | None:
    """The encryption a new object gets (its headers, or the bucket's default; data_key()
    gives its key); None: stored as sent."""
    sse_c = customer_key(headers)
    wanted = headers.get(PREFIX)
    if sse_c is not None:
        if wanted is not None:
            raise errors.InvalidArgument("Server Side Encryption with Customer provided key "
                                         "and with AWS managed keys are exclusive",
                                         ArgumentName=PREFIX)
        return {"alg": "C", "iv": _iv(), "kmd5": sse_c[1]}
    if wanted is None:
        default = bucket.config.get("encryption")
        if default is None:
            if KMS_ID in headers:
                raise errors.InvalidArgument("Server Side Encryption with KMS managed key "
                                             "requires HTTP header x-amz-server-side-encryption "
                                             ": aws:kms", ArgumentName=KMS_ID)
            return None
        wanted, kms_id = default["alg"], default.get("kms")
    else:
        kms_id = headers.get(KMS_ID)
    if wanted not in ("AES256", "aws:kms"):
        raise errors.InvalidArgument("The encryption method specified is not supported",
                                     ArgumentName=PREFIX, ArgumentValue=wanted[:40])
    if wanted == "AES256" and KMS_ID in headers:
        raise errors.InvalidArgument("x-amz-server-side-encryption-aws-kms-key-id needs "
                                     "x-amz-server-side-encryption: aws:kms",
                                     ArgumentName=KMS_ID)
    if wanted == "aws:kms" and not kms_id:
        raise errors.InvalidArgument("Server Side Encryption with KMS managed key requires "
                                     "x-amz-server-side-encryption-aws-kms-key-id",
                                     ArgumentName=KMS_ID)
    key = os.urandom(32)
    nonce = os.urandom(12)
    kms = kms_id if wanted == "aws:kms" else None
    wrapped = nonce + AESGCM(await _kek(req.svc, kms)).encrypt(nonce, key, None)
    sse: Sse = {"alg": "KMS" if kms else "S3", "iv": _iv(),
                "wrapped": base64.b64encode(wrapped).decode()}
    if kms:
        sse["kms"] = kms
    return sse


def _iv() -> str:
    return base64.b64encode(os.urandom(16)).decode()


async def data_key(req: Any, sse: Sse, headers: dict[str, str] | None = None,
                   prefix: str = CUSTOMER) -> bytes:
    """The key that decrypts an object: the client's (SSE-C: it must send the one it
    wrote with) or the stored one unwrapped."""
    if sse["alg"] == "C":
        given = customer_key(headers if headers is not None else req.headers, prefix)
        if given is None:
            raise errors.InvalidRequest("The object was stored using a form of Server Side "
                                        "Encryption. The correct parameters must be provided "
                                        "to retrieve the object.")
        if given[1] != sse["kmd5"]:
            raise errors.InvalidRequest("The provided customer key does not match the one the "
                                        "object was encrypted with")
        return given[0]
    wrapped = base64.b64decode(sse["wrapped"])
    kek = await _kek(req.svc, sse.get("kms"))
    return AESGCM(kek).decrypt(wrapped[:12], wrapped[12:], None)


def refuse_on_read(headers: dict[str, str]) -> None:
    """A GET or HEAD names SSE-C keys only: the other encryption headers belong to writes."""
    if PREFIX in headers or KMS_ID in headers:
        raise errors.InvalidArgument("x-amz-server-side-encryption header is not supported "
                                     "for this operation.", ArgumentName=PREFIX)


def part_iv(sse: Sse, part: int) -> str:
    base = base64.b64decode(sse["iv"])
    return base64.b64encode(hmac.new(base, str(part).encode(), hashlib.sha256).digest()[
        :16]).decode()


def _cipher(key: bytes, iv: str, offset: int) -> Any:
    counter = (int.from_bytes(base64.b64decode(iv), "big") + offset // 16) % (1 << 128)
    ctx = Cipher(algorithms.AES(key), modes.CTR(counter.to_bytes(16, "big"))).encryptor()
    ctx.update(bytes(offset % 16))  # into the block where `offset` is
    return ctx


async def encrypt(pieces: AsyncIterator[bytes], key: bytes, iv: str) -> AsyncIterator[bytes]:
    ctx = _cipher(key, iv, 0)
    async for piece in pieces:
        yield ctx.update(piece)


async def decrypt(pieces: AsyncIterator[bytes], entry: dict[str, Any], key: bytes,
                  first: int) -> AsyncIterator[bytes]:
    """The plaintext of an object's bytes from `first` on (a multipart object's parts each
    decrypted with their own IV)."""
    sse = entry["sse"]
    numbers = sse.get("parts")
    if not numbers:
        ctx = _cipher(key, sse["iv"], first)
        async for piece in pieces:
            yield ctx.update(piece)
        return
    starts = [0]
    for size in entry["psizes"]:
        starts.append(starts[-1] + size)
    pos = first

    def part_at(at: int) -> int:
        return max(i for i in range(len(numbers)) if starts[i] <= at)
    index = part_at(pos)
    ctx = _cipher(key, part_iv(sse, numbers[index]), pos - starts[index])
    async for piece in pieces:
        view = memoryview(piece)
        while len(view):
            room = starts[index + 1] - pos
            chunk, view = view[:room], view[room:]
            yield ctx.update(chunk)
            pos += len(chunk)
            if pos == starts[index + 1] and index + 1 < len(numbers):
                index += 1
                ctx = _cipher(key, part_iv(sse, numbers[index]), 0)


def response_headers(sse: Sse | None) -> dict[str, str]:
    if not sse:
        return {}
    if sse["alg"] == "C":
        return {CUSTOMER + "algorithm": "AES256", CUSTOMER + "key-MD5": sse["kmd5"]}
    if sse["alg"] == "KMS":
        return {PREFIX: "aws:kms", KMS_ID: sse["kms"]}
    return {PREFIX: "AES256"}


# --- a bucket's default encryption ---------------------------------------------------------
async def put_bucket_encryption(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:PutEncryptionConfiguration")
    root = s3_xml.parse(await req.small_body(s3_xml.MAX_BODY))
    rule = root.find("Rule/ApplyServerSideEncryptionByDefault")
    alg = s3_xml.text(rule, "SSEAlgorithm") if rule is not None else None
    if root.tag != "ServerSideEncryptionConfiguration" or alg not in ("AES256", "aws:kms"):
        raise errors.MalformedXML()
    default: dict[str, Any] = {"alg": alg}
    kms_id = s3_xml.text(rule, "KMSMasterKeyID") if rule is not None else None
    if alg == "aws:kms":
        default["kms"] = (kms_id or "default").strip()
    bucket.config["encryption"] = default
    await req.svc.buckets.save(bucket)
    return web.Response(status=200)


async def get_bucket_encryption(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:GetEncryptionConfiguration")
    default = bucket.config.get("encryption")
    if not default:
        raise NoSuchEncryption(BucketName=bucket.short_name)
    nodes: list[Node] = [("SSEAlgorithm", default["alg"])]
    if default.get("kms"):
        nodes.append(("KMSMasterKeyID", default["kms"]))
    return xml_response(document("ServerSideEncryptionConfiguration", [
        ("Rule", [("ApplyServerSideEncryptionByDefault", nodes),
                  ("BucketKeyEnabled", False)])]))


async def delete_bucket_encryption(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:PutEncryptionConfiguration")
    bucket.config.pop("encryption", None)
    await req.svc.buckets.save(bucket)
    return web.Response(status=204)
