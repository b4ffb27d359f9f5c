"""Fixtures shared by integration test modules (each started only when a test asks for it)."""

from tests.integration.breadth_fixture import breadth  # noqa: F401
