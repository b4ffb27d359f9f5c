"""Swift bulk delete (`POST /?bulk-delete`, a body of URL-encoded `/container/object` or
`/container` lines) and the report it answers, which SLO deletes share.

Like Swift's bulk middleware, the HTTP status is 200 once the body was read; what happened is
in the report: Number Deleted, Number Not Found, Errors ([name, status]) and Response Status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import unquote

from aiohttp import web

from gateway import errors
from gateway.buckets import key_bytes
from gateway.swift_context import SwiftRequest
from gateway.swift_errors import SwiftError, from_s3, reason

MAX_DELETES = 10000
MAX_LINE = 1024 + 256 + 2
ERROR_LIMIT = 1000


@dataclass
class Report:
    deleted: int = 0
    not_found: int = 0
    errors: list[list[str]] = field(default_factory=list)
    status: str = "200 OK"
    body: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"Number Deleted": self.deleted, "Number Not Found": self.not_found,
                "Errors": self.errors, "Response Status": self.status,
                "Response Body": self.body}

    def fail(self, name: str, status: int) -> None:
        self.errors.append([name, f"{status} {reason(status)}"])
        self.status = "400 Bad Request"


def respond(report: Report, accept: str) -> web.Response:
    if "json" in accept:
        return web.Response(status=200, body=json.dumps(report.as_dict()).encode(),
                            content_type="application/json")
    lines = [f"Number Deleted: {report.deleted}", f"Number Not Found: {report.not_found}",
             f"Response Body: {report.body}", f"Response Status: {report.status}",
             "Errors:"] + [f"{name}, {status}" for name, status in report.errors]
    return web.Response(status=200, text="\n".join(lines) + "\n", content_type="text/plain")


async def delete_path(req: SwiftRequest, path: str, report: Report) -> None:
    """Delete one `/container[/object]` of the request's account, noting the outcome."""
    container, _, obj = path.lstrip("/").partition("/")
    try:
        if not container:
            raise SwiftError(400, "No container")
        if obj:
            bucket = await req.bucket("write", container)
            removed = await req.svc.objects.delete(bucket, key_bytes(obj), req.owner)
            if removed is None:
                report.not_found += 1
                return
        else:
            req.need_admin()
            try:
                bucket = await req.bucket("admin", container)
            except errors.NoSuchBucket:
                report.not_found += 1
                return
            await req.svc.buckets.delete(bucket)
        report.deleted += 1
    except errors.S3Error as exc:
        failure = from_s3(exc)
        if failure.status == 404:
            report.not_found += 1
        else:
            report.fail(path, failure.status)
    except SwiftError as exc:
        report.fail(path, exc.status)


async def bulk_delete(req: SwiftRequest) -> web.Response:
    if req.identity.user is None:
        raise req.deny()
    body = await req.small_body(MAX_DELETES * MAX_LINE)
    lines = [line.strip() for line in body.split(b"\n") if line.strip()]
    if len(lines) > MAX_DELETES:
        raise SwiftError(413, f"Maximum Bulk Deletes: {MAX_DELETES} per request")
    report = Report()
    for raw in lines:
        try:
            path = unquote(raw.decode("utf-8"), errors="strict")
        except UnicodeDecodeError:
            report.fail(raw.decode("utf-8", "replace"), 412)
            continue
        await delete_path(req, path, report)
        if len(report.errors) >= ERROR_LIMIT:
            break
    return respond(report, req.headers.get("accept", ""))
