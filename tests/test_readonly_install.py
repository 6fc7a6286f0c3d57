"""The router's compiled kernels in a read-only install, as the image's pods run it (modules/center.py: read-only root
filesystem; the Dockerfile's user has no home): numba cannot keep them beside their source there. Real components: a
private mount namespace with the package bind-mounted read-only (unshare and mount, as root, the way the kernel
enforces it on the pods), the project's own interpreter and numba. Nothing is mocked."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PROBE = """
import globalaccel, sys
from pathlib import Path
assert globalaccel.__file__.startswith(sys.argv[1]), globalaccel.__file__
from globalaccel.latency import LatencyModel
from globalaccel.routing import Router
from globalaccel.topology import load_stack
topo = load_stack("dev", Path(sys.argv[1]) / "stacks")
table, _ = Router(topo).compute(LatencyModel(topo))
print("routed", len(table.routes))
"""


def run_read_only(tree: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("needs root and unshare (util-linux) for a read-only bind mount: CI and this machine have both")
    (tree / "probe.py").write_text(PROBE, encoding="utf-8")
    assignments = " ".join(f"{k}={v}" for k, v in env.items())
    script = (f"mount --bind {tree} {tree} && mount -o remount,bind,ro {tree} && cd / && "
              f"exec env -u XDG_CACHE_HOME -u NUMBA_CACHE_DIR HOME={tree}/home PYTHONPATH={tree} {assignments} "
              f"{sys.executable} {tree}/probe.py {tree}")
    return subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    out = tmp_path / "ro"
    shutil.copytree(ROOT / "globalaccel", out / "globalaccel", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "stacks", out / "stacks")
    (out / "home").mkdir()
    return out


def test_a_read_only_install_routes_with_the_images_cache_dir_and_keeps_the_kernels_there(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "numba"  # the image's NUMBA_CACHE_DIR is on the pods' writable /tmp volume
    done = run_read_only(tree, {"NUMBA_CACHE_DIR": str(cache)})
    assert done.returncode == 0, done.stderr
    assert "routed" in done.stdout and "compiled at every start" not in done.stderr
    assert list(cache.rglob("*.nbi")), "the compiled kernels are kept in NUMBA_CACHE_DIR"


def test_a_read_only_install_without_a_cache_dir_still_routes_and_says_why_it_compiles_each_start(tree: Path) -> None:
    done = run_read_only(tree, {})
    assert done.returncode == 0, done.stderr  # before: RuntimeError: cannot cache function ...
    assert "routed" in done.stdout
    assert "compiled at every start instead (set NUMBA_CACHE_DIR" in done.stderr
