"""One cluster and gateway shared by the S3/Swift breadth tests (access control, lifecycle,
encryption, object lock, CORS, tenants), with the users they need: the ready user ("main"),
"alt" (another user, with an e-mail address for grants), "carl" in tenant t1 and "dora" in
tenant t2 (each its own bucket namespace and Swift account). Timers are shortened: a lifecycle
"day" is 2 seconds, the GC waits half a second.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from rados_py.rados import Rados
from tests.integration.gateway_fixture import GatewayProcess, loligo, running_gateway

LC_DAY = 2.0
USERS = {  # name: (uid, tenant, access key, secret key, e-mail)
    "alt": ("alt", "", "ALTACCESSKEY00000001", "alt-secret-key-0000000000000000000000001",
            "alt@example.com"),
    "carl": ("carl", "t1", "CARLACCESSKEY0000001", "carl-secret-key-000000000000000000000001",
             "carl@example.com"),
    "dora": ("dora", "t2", "DORAACCESSKEY0000001", "dora-secret-key-000000000000000000000001",
             "dora@example.com"),
}


@dataclass
class Breadth:
    gw: GatewayProcess
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (access, secret)
    uids: dict[str, str] = field(default_factory=dict)
    swift_keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # acct:user, key

    @property
    def url(self) -> str:
        return self.gw.url

    def client(self, who: str = "main", **config: Any) -> Any:
        access, secret = self.keys[who]
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=access, aws_secret_access_key=secret,
                            config=BotoConfig(retries={"max_attempts": 1}, **config))

    def rados_objects(self, pool: str, prefix: bytes = b"") -> dict[bytes, bytes]:
        """Every RADOS object of a gateway pool (name -> content) whose name starts with
        `prefix`: what is really stored, read around the gateway."""
        async def go() -> dict[bytes, bytes]:
            async with Rados(self.gw.cluster.config) as rados:
                io = await rados.open_ioctx(f".loligo.gw.{pool}")
                names = [n async for _, n in io.list_objects() if n.startswith(prefix)]
                return {n: await io.read(n.decode()) for n in names}
        return asyncio.run(go())

    def bucket_id(self, name: str) -> str:
        async def go() -> str:
            async with Rados(self.gw.cluster.config) as rados:
                meta = await rados.open_ioctx(".loligo.gw.meta")
                return str(json.loads(await meta.read(f"bucket.{name}"))["id"])
        return asyncio.run(go())

    def log(self) -> str:
        return Path(self.gw.cluster.log_file(self.gw.cluster.daemon("gateway.1"))).read_text(
            errors="replace")


@pytest.fixture(scope="session")
def breadth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Breadth]:
    directory = tmp_path_factory.mktemp("breadth") / "cluster"
    settings = {"gateway_lc_day_seconds": LC_DAY, "gateway_lc_interval": 0.3,
                "gateway_gc_min_wait": 0.5, "gateway_gc_interval": 0.2,
                "gateway_user_cache_ttl": 0.2}
    with running_gateway(directory, osds=2, settings=settings) as gw:
        b = Breadth(gw)
        main = gw.user["keys"][0]
        b.keys["main"] = (main["access_key"], main["secret_key"])
        b.uids["main"] = gw.user["user_id"]
        for name, (uid, tenant, access, secret, email) in USERS.items():
            args = ["user", "create", "--uid", uid, "--display-name", name.title(),
                    "--email", email, "--access-key", access, "--secret-key", secret,
                    "--swift-user", f"{tenant or uid}:{uid}", "--swift-key", f"{uid}-swift",
                    "--format", "json"]
            if tenant:
                args += ["--tenant", tenant]
            done = loligo(gw.cluster, *args)
            assert done.returncode == 0, done.stderr
            b.keys[name] = (access, secret)
            b.uids[name] = json.loads(done.stdout)["user_id"]
            b.swift_keys[name] = (f"{tenant or uid}:{uid}", f"{uid}-swift")
        yield b


def new_name(prefix: str = "b") -> str:
    import uuid

    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def error_of(exc: Any) -> tuple[int, str]:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]


def code_of(body: bytes) -> str:
    m = re.search(rb"<Code>([^<]*)</Code>", body)
    return m.group(1).decode() if m else ""
