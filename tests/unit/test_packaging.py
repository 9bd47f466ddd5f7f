"""What ``pip install phantom-authz`` and the image install: the service, never the development tools."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_item15_dev_tools_are_not_in_the_wheel(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=180)
    wheel = next(tmp_path.glob("phantom_authz-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n == "authz/pipeline.py" for n in names)
    leaked = [n for n in names if "auth_server" in n or n.startswith(("devtools/", "authz/dev/"))]
    assert leaked == []


def test_item15_the_package_never_imports_dev_tools() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "authz").rglob("*.py")
                 if "devtools" in p.read_text() or "authz.dev" in p.read_text()]
    assert offenders == []


def test_item15_the_image_copies_only_the_package() -> None:
    copies = [line.split()[1] for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY") and "--from" not in line]
    assert "devtools" not in " ".join(copies) and "." not in copies


@pytest.mark.parametrize("module", ["authz.pipeline", "authz.token_exchange", "authz.introspection", "authz.cache",
                                    "authz.policy.stage", "authz.dpop", "authz.routes", "authz.app"])
def test_each_entry_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    """An import cycle shows only when its modules are imported in one order: bench/cache_bench.py imported
    authz.pipeline first and failed (pipeline -> token_exchange -> introspection -> authority -> token_exchange)."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
