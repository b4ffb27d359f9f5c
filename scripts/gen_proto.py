"""Regenerate the Python modules of proto/*.proto into rados_py/proto/ (the one place they live).

    python scripts/gen_proto.py            # rewrite rados_py/proto/
    python scripts/gen_proto.py --out DIR  # write elsewhere (the staleness test compares)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "proto"
DEFAULT_OUT = ROOT / "rados_py" / "proto"


def generate(out: Path) -> list[Path]:
    from grpc_tools import protoc

    sources = sorted(PROTO_DIR.rglob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    args = ["protoc", f"-I{PROTO_DIR}", f"--python_out={out}", f"--grpc_python_out={out}"]
    if protoc.main([*args, *map(str, sources)]) != 0:
        raise SystemExit("protoc failed")
    for pkg in [out, *(p for p in out.rglob("*") if p.is_dir())]:
        (pkg / "__init__.py").touch()
    # protoc writes absolute imports ("from loligo import maps_pb2"); make them package-relative
    # so the generated package works wherever it is imported from.
    for py in out.rglob("*_pb2*.py"):
        text = py.read_text()
        fixed = text.replace("from loligo import ", "from . import ")
        if fixed != text:
            py.write_text(fixed)
    return sorted(out.rglob("*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path.relative_to(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
