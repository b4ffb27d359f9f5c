"""Seeded, deterministic simulations of many nodes (CONVENTIONS.md, tests in tiers)."""
