"""Dependencies point down: rados_py <- mon, osd, mds <- gateway <- cluster (CONVENTIONS.md).
A module importing from a layer above its own fails this test."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYER = {"rados_py": 0, "mon": 1, "osd": 1, "mds": 1, "gateway": 2, "cluster": 3}
# Daemons of the same layer talk over the wire, never through each other's modules; the
# gateway and the FUSE client use only the client library.
FORBIDDEN_SIDEWAYS = {("mon", "osd"), ("osd", "mon"), ("mds", "osd"), ("osd", "mds"),
                      ("mon", "mds"), ("mds", "mon"), ("gateway", "osd"), ("gateway", "mon"),
                      ("gateway", "mds")}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & LAYER.keys()


def test_imports_point_down() -> None:
    violations = []
    for package, layer in LAYER.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            if "proto" in path.relative_to(ROOT).parts:
                continue
            for target in imported_packages(path):
                if LAYER[target] > layer or (package, target) in FORBIDDEN_SIDEWAYS:
                    violations.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not violations, "upward or sideways imports:\n" + "\n".join(violations)
