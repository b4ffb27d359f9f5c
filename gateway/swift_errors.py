"""Swift's errors: an HTTP status with a short text, and the one table that maps the store's
(S3-named) errors to the statuses Swift clients expect.

Swift answers errors as a status plus a tiny HTML body; clients read the status only. The store
below is shared with S3 and raises S3Error classes (NoSuchBucket, BucketNotEmpty...): they are
translated here, never by the handlers.
"""

from __future__ import annotations

from http import HTTPStatus

from gateway import errors


class SwiftError(Exception):
    def __init__(self, status: int, message: str = "",
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.message = message
        self.headers = headers or {}
        super().__init__(f"{status} {message}")


# S3 error code -> Swift status, where the S3 status is not already the right one
_STATUS = {
    "NoSuchBucket": 404, "NoSuchKey": 404, "NoSuchVersion": 404, "NoSuchUpload": 404,
    "BucketNotEmpty": 409, "BucketAlreadyExists": 409, "BucketAlreadyOwnedByYou": 202,
    "AccessDenied": 403, "InvalidRange": 416, "PreconditionFailed": 412, "NotModified": 304,
    "MissingContentLength": 411, "EntityTooLarge": 413, "MetadataTooLarge": 400,
    "KeyTooLongError": 400, "InvalidBucketName": 400, "IncompleteBody": 499,
    "BadDigest": 422, "ServiceUnavailable": 503, "MethodNotAllowed": 405,
    "InvalidURI": 412,
}


def from_s3(exc: errors.S3Error) -> SwiftError:
    status = _STATUS.get(exc.code, exc.status)
    headers = {k: v for k, v in exc.headers.items() if not k.lower().startswith("x-amz-")}
    return SwiftError(status, exc.message, headers)


def reason(status: int) -> str:
    if status == 499:
        return "Client Disconnect"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def body_of(exc: SwiftError) -> bytes:
    text = exc.message or reason(exc.status)
    return (f"<html><h1>{reason(exc.status)}</h1><p>{_escape(text)}</p></html>").encode()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
