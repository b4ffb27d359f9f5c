"""CORS: a bucket's rules (Get/Put/DeleteBucketCors), the preflight `OPTIONS` a browser sends
before a cross-origin request, and the Access-Control-* headers of the actual answers.

A rule allows origins (with one `*` wildcard each), methods (GET PUT HEAD POST DELETE),
request headers (wildcards too), and names the response headers a page may read and how long
a preflight answer may be cached. The first rule that matches the origin and the method wins,
as S3 documents. A preflight is answered without authentication (browsers send none): 400
without Origin or Access-Control-Request-Method, 403 when no rule allows it.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from gateway import errors, s3_xml
from gateway.buckets import Bucket
from gateway.context import S3Request
from gateway.s3_buckets import xml_response
from gateway.s3_xml import Node, document

METHODS = ("GET", "PUT", "HEAD", "POST", "DELETE")
MAX_RULES = 100
NoSuchCORSConfiguration = type("NoSuchCORSConfiguration", (errors.S3Error,), {
    "code": "NoSuchCORSConfiguration", "status": 404,
    "default": "The CORS configuration does not exist"})
CORSForbidden = type("AccessForbidden", (errors.S3Error,), {
    "code": "AccessForbidden", "status": 403,
    "default": "CORSResponse: This CORS request is not allowed."})

Rule = dict[str, Any]  # {"origins": [...], "methods": [...], "headers": [...], "expose":
#                         [...], "max_age": int | None, "id": str | None}


def _wildcard(pattern: str, value: str, case: bool = True) -> bool:
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def parse(body: bytes) -> list[Rule]:
    """The rules of a CORSConfiguration document; MalformedXML/InvalidRequest otherwise."""
    root = s3_xml.parse(body)
    if root.tag != "CORSConfiguration":
        raise errors.MalformedXML()
    rules: list[Rule] = []
    for el in root.findall("CORSRule"):
        origins = [o.text or "" for o in el.findall("AllowedOrigin")]
        methods = [(m.text or "").strip() for m in el.findall("AllowedMethod")]
        if not origins or not methods:
            raise errors.MalformedXML("A CORSRule has an AllowedOrigin and an AllowedMethod")
        for m in methods:
            if m not in METHODS:
                raise errors.InvalidRequest(f"Found unsupported HTTP method in CORS config. "
                                            f"Unsupported method is {m}")
        for o in origins:
            if o.count("*") > 1:
                raise errors.InvalidRequest(f'AllowedOrigin "{o}" can not have more than one '
                                            "wildcard.")
        headers = [h.text or "" for h in el.findall("AllowedHeader")]
        for h in headers:
            if h.count("*") > 1:
                raise errors.InvalidRequest(f'AllowedHeader "{h}" can not have more than one '
                                            "wildcard.")
        max_age = s3_xml.text(el, "MaxAgeSeconds")
        if max_age is not None and not max_age.strip().lstrip("-").isdigit():
            raise errors.MalformedXML("MaxAgeSeconds is a number of seconds")
        rules.append({"id": s3_xml.text(el, "ID"), "origins": origins, "methods": methods,
                      "headers": headers,
                      "expose": [e.text or "" for e in el.findall("ExposeHeader")],
                      "max_age": int(max_age) if max_age is not None else None})
    if not rules or len(rules) > MAX_RULES:
        raise errors.MalformedXML(f"A CORS configuration has 1 to {MAX_RULES} rules")
    return rules


def document_of(rules: list[Rule]) -> bytes:
    nodes: list[Node] = []
    for r in rules:
        rule: list[Node] = [("ID", r.get("id"))]
        rule += [("AllowedMethod", m) for m in r["methods"]]
        rule += [("AllowedOrigin", o) for o in r["origins"]]
        rule += [("AllowedHeader", h) for h in r["headers"]]
        rule += [("ExposeHeader", e) for e in r["expose"]]
        rule.append(("MaxAgeSeconds", r.get("max_age")))
        nodes.append(("CORSRule", rule))
    return document("CORSConfiguration", nodes)


def match(rules: list[Rule], origin: str, method: str,
          request_headers: list[str] | None = None) -> tuple[Rule, str] | None:
    """The first rule allowing `origin` to use `method` (and, for a preflight, every header
    in `request_headers`), with the origin as it matched ("*" for the wildcard rule)."""
    for rule in rules:
        if method not in rule["methods"]:
            continue
        hit = next((o for o in rule["origins"] if _wildcard(o, origin)), None)
        if hit is None:
            continue
        if request_headers and not all(
                any(_wildcard(a, h, case=False) for a in rule["headers"])
                for h in request_headers):
            continue
        return rule, "*" if hit == "*" else origin
    return None


def response_headers(rule: Rule, origin: str, preflight_headers: list[str] | None = None
                     ) -> dict[str, str]:
    out = {"Access-Control-Allow-Origin": origin,
           "Access-Control-Allow-Methods": ", ".join(rule["methods"])}
    if rule["expose"]:
        out["Access-Control-Expose-Headers"] = ", ".join(rule["expose"])
    if preflight_headers:
        out["Access-Control-Allow-Headers"] = ", ".join(preflight_headers)
    if rule.get("max_age") is not None and preflight_headers is not None:
        out["Access-Control-Max-Age"] = str(rule["max_age"])
    if origin != "*":
        out["Vary"] = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
    return out


def _requested_headers(value: str) -> list[str]:
    return [h.strip().lower() for h in value.split(",") if h.strip()]


def actual_headers(bucket: Bucket, headers: dict[str, str], method: str) -> dict[str, str]:
    """The Access-Control-* headers of an answer to a cross-origin request (any status)."""
    origin = headers.get("origin")
    rules = bucket.config.get("cors")
    if not origin or not rules:
        return {}
    wanted = headers.get("access-control-request-method") or method
    found = match(rules, origin, wanted)
    return response_headers(*found) if found is not None else {}


async def preflight(svc: Any, bucket_name: str, headers: dict[str, str]) -> web.Response:
    """An OPTIONS request: answered from the bucket's rules, without authentication."""
    origin = headers.get("origin")
    method = headers.get("access-control-request-method")
    if not origin:
        raise errors.InvalidRequest("Insufficient information. Origin request header needed.")
    if not method:
        raise errors.InvalidRequest("Invalid Access-Control-Request-Method: null")
    bucket = await svc.buckets.get(bucket_name, cached=True)
    requested = _requested_headers(headers.get("access-control-request-headers", ""))
    found = match(bucket.config.get("cors") or [], origin, method, requested)
    if found is None:
        raise CORSForbidden()
    rule, allowed = found
    return web.Response(status=200, headers=response_headers(rule, allowed, requested))


# --- the configuration's handlers ----------------------------------------------------------
async def get_bucket_cors(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:GetBucketCORS")
    rules = bucket.config.get("cors")
    if not rules:
        raise NoSuchCORSConfiguration(BucketName=bucket.short_name)
    return xml_response(document_of(rules))


async def put_bucket_cors(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:PutBucketCORS")
    bucket.config["cors"] = parse(await req.small_body(s3_xml.MAX_BODY))
    await req.svc.buckets.save(bucket)
    return web.Response(status=200)


async def delete_bucket_cors(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:PutBucketCORS")
    bucket.config.pop("cors", None)
    await req.svc.buckets.save(bucket)
    return web.Response(status=204)
