"""Writes docker/constraints.txt: exact versions of the project's runtime dependency closure,
taken from the environment the tests pass in (the image installs with ``-c`` these).

    python docker/lock.py            # rewrite docker/constraints.txt from this environment
    python docker/lock.py --check    # exit 1 if the file differs from what it would write

The closure follows ``[project].dependencies`` of pyproject.toml (extras and environment
markers evaluated here: Linux, the running Python, which must match the image's 3.11).
Local version labels are dropped (``torch 2.13.0+cpu`` -> ``torch==2.13.0``) so the CUDA
image resolves the same pin to the CUDA wheel. That wheel's CUDA packages are pinned in
docker/constraints-cuda.txt, by hand (this environment has the CPU torch; docs/deploy.md).
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    sys.exit("docker/lock.py needs Python 3.11 (the image's Python)")

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docker" / "constraints.txt"
HEADER = """\
# Exact versions of the project's runtime dependency closure (generated; do not edit).
# Regenerate from an environment where the tests pass:  python docker/lock.py
# tests/deploy/test_docker_image.py checks it against pyproject.toml and the installed closure.
"""


def project_requirements(pyproject: Path = REPO / "pyproject.toml") -> list[Requirement]:
    data = tomllib.loads(pyproject.read_text())
    return [Requirement(r) for r in data["project"]["dependencies"]]


def closure(roots: list[Requirement]) -> dict[str, str]:
    """``{canonical name: installed version without local label}`` of ``roots`` and
    everything they need here."""
    env = default_environment()
    seen: dict[str, set[str]] = {}  # name -> extras already expanded
    pins: dict[str, str] = {}
    todo = [(r, "") for r in roots]
    while todo:
        req, parent_extra = todo.pop()
        if req.marker and not req.marker.evaluate({**env, "extra": parent_extra}):
            continue
        name = canonicalize_name(req.name)
        new_extras = set(req.extras) - seen.get(name, set())
        if name in seen and not new_extras:
            continue
        seen.setdefault(name, set()).update(req.extras)
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            raise SystemExit(
                f"{req.name} is not installed here: install the project first (pip install -e .)"
            ) from None
        pins[name] = Version(dist.version).public
        for sub in map(Requirement, dist.requires or []):
            for extra in ("", *sorted(req.extras)):
                todo.append((sub, extra))
    return pins


def render(pins: dict[str, str]) -> str:
    return HEADER + "".join(f"{n}=={v}\n" for n, v in sorted(pins.items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    text = render(closure(project_requirements()))
    if args.check:
        if OUT.read_text() != text:
            print(f"{OUT} is out of date: run python docker/lock.py")
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT} ({text.count(chr(10)) - HEADER.count(chr(10))} pins)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
