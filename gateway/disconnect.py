"""Answers that fail after they began streaming.

A client that closes its connection while an answer streams to it is normal (a player that
seeks, a cancelled download, a client that read what it wanted): one line at INFO, never an
ERROR with a traceback that buries the real failures. A failure of ours after the status line
went out cannot become an error document any more: the connection is cut, so the client sees
a short body rather than wrong data."""

from __future__ import annotations

import logging

from aiohttp import web

log = logging.getLogger(__name__)


def client_went_away(request: web.Request, exc: BaseException) -> None:
    log.info("%s %s %s: the client went away during the answer (%s)",
             request.get("request_id"), request.method, request.path, type(exc).__name__)


def cut_short(request: web.Request) -> web.StreamResponse:
    """End a streamed answer that cannot be completed: the connection is aborted and the
    response already begun (request["streaming"]) handed back to aiohttp, which finds the
    transport closed and drops the connection without logging an error."""
    if request.transport is not None:
        request.transport.abort()
    resp = request["streaming"]
    assert isinstance(resp, web.StreamResponse)
    return resp
