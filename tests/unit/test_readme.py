"""What the README promises, as written: its table of contents reaches every section, the commands of "Running the
service" work after ``make install`` as typed there (the venv activated, the variable the shipped config needs set,
from the checkout and from elsewhere), and the quickstart's demo client is described as the dev AS registers it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from devtools.auth_server import default_clients

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _headings() -> dict[str, str]:
    """Level 2 and 3 headings outside code blocks, by their GitHub anchor."""
    found, in_code = {}, False
    for line in README.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and re.match(r"#{2,3} ", line):
            title = line.lstrip("#").strip()
            found[re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")] = title
    return found


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    return README[start:README.index("\n## ", start + 1)]


def test_table_of_contents_links_every_section_and_nothing_else() -> None:
    headings = _headings()
    contents = _section("Contents")
    linked = re.findall(r"\]\(#([^)]+)\)", contents)
    assert [a for a in linked if a not in headings] == [], "links to no heading"
    missing = [title for anchor, title in headings.items() if anchor not in linked and title != "Contents"]
    assert missing == [], "sections missing from the README's Contents (add a link there)"
    assert [a for a in re.findall(r"\]\(#([^)]+)\)", README) if a not in headings] == [], "in-page links to nothing"


def _running_commands() -> list[str]:
    """The first sh block of "Running the service", without what keeps running (``&``, ``authz serve``)."""
    block = _section("Running the service").split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [line.split("  #", 1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.endswith("&") and not line.startswith("authz serve")]


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "activate").exists(), reason="no .venv: run make install")
def test_running_the_service_commands_work_as_written(tmp_path: Path) -> None:
    commands = _running_commands()
    assert commands[0] == ". .venv/bin/activate" and any("DEV_AS_GATEWAY_SECRET" in c for c in commands), commands
    assert "authz validate-config --config deploy/authz.yaml" in commands
    script = " && ".join(c.replace("authz.schema.json", str(tmp_path / "authz.schema.json")) for c in commands)
    # a shell that has never seen the venv (no authz on PATH) and has no secret set
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(["sh", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "deploy/authz.yaml: configuration is valid" in done.stdout
    assert json.loads((tmp_path / "authz.schema.json").read_text())["title"] == "phantom-authz configuration"
    # without the variable: exit 2 and the one line the README quotes
    bare = subprocess.run(["sh", "-c", ". .venv/bin/activate && authz validate-config --config deploy/authz.yaml"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert bare.returncode == 2
    assert bare.stderr.strip() in README, bare.stderr
    # file names are relative to the config file: the same file from another directory (policy.paths: [policies])
    elsewhere = subprocess.run(
        ["sh", "-c", f". {ROOT}/.venv/bin/activate && authz validate-config --config {ROOT}/deploy/authz.yaml"],
        cwd=tmp_path, env={**env, "DEV_AS_GATEWAY_SECRET": "s"}, capture_output=True, text=True, timeout=60)
    assert elsewhere.returncode == 0, elsewhere.stderr


def test_the_demo_clients_scopes_are_the_dev_as_registration() -> None:
    demo = default_clients()["demo-client"]
    *first, last = demo.scopes
    assert f"the scopes {', '.join(first)} and {last}; a request naming no scope gets {demo.default_scopes[0]}" in \
        README.replace("\n#    ", " ")
    table_row = ", ".join(f"`{s}`" for s in demo.scopes) + f"; `{demo.default_scopes[0]}` by default"
    assert table_row in README
