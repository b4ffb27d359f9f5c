"""Integration tests: real daemon processes on 127.0.0.1, driven by real clients."""

import uuid


def random_base_port() -> int:
    """A first port to try for a test cluster: spread out, so that two test runs on one machine
    (CI next to a developer's) rarely race for the same ports."""
    return 20000 + uuid.uuid4().int % 20000
