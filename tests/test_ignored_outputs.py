"""What the documented commands write at the repository root stays out of uploads.

Ray's working-dir upload and ``ray up``'s rsync honour .gitignore, and the KubeRay image build
honours .dockerignore: an output directory missing there was uploaded with every
``ray job submit --working-dir .`` (65 MB of demo data and models in one review).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WRITES = re.compile(
    r"--(?:output|report|workdir|cutout-output|storage-path|prior)[ =](?!\S*://)"
    r"([A-Za-z0-9_.][\w./-]*)|to_parquet\('([\w./-]+)'"
)
TRACKED = {"docs"}  # plots written into the documentation on purpose


def documented_root_outputs() -> set[str]:
    """First components of the relative paths that commands in README.md, docs/ and the
    jobs' help write to (placeholders in capitals, URIs and ../ paths left out)."""
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    texts += sorted((ROOT / "jobs").glob("*.py"))
    found = set()
    lines = [line for path in texts for line in path.read_text().splitlines()]
    commands = [line for line in lines if _is_command(line)]
    for line in commands:
        for match in WRITES.finditer(line):
            target = match.group(1) or match.group(2)
            first = target.split("/")[0]
            if first and not first.isupper() and not target.startswith("..") and first != ".":
                found.add(first)
    return found - TRACKED


def _is_command(line: str) -> bool:
    """A line of a command (a ``python``/``ray`` call or its continuation, or code in
    backticks), not prose that mentions a flag ("rerunning into the same --output writes")."""
    text = line.strip()
    return bool(re.search(r"\bpython3? ", text)) or text.startswith(("--", "ray ")) or "`" in text


def test_every_documented_output_is_ignored_by_git_and_docker():
    outputs = documented_root_outputs()
    assert {"sim", "models", "raypz-demo"} <= outputs  # the pattern still finds them
    git = set((ROOT / ".gitignore").read_text().split())
    docker = set((ROOT / ".dockerignore").read_text().split())
    missing_git = sorted(o for o in outputs if f"/{o}/" not in git and f"/{o}" not in git)
    missing_docker = sorted(o for o in outputs if o not in docker)
    assert not missing_git, f".gitignore lacks documented outputs: {missing_git}"
    assert not missing_docker, f".dockerignore lacks documented outputs: {missing_docker}"
