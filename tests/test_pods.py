"""Each prober Deployment's container, run as its pod would be, probed from outside as the kubelet would.

No Kubernetes can run here, so a pod is approximated with what Linux has: a network namespace of its
own with one veth address (198.18.250.2, a benchmarking address no network routes), the container's
exact `args` from the rendered manifest, its user (runAsUser 10001, non-root), and its volumes as
folders (the stack's ConfigMap written out file by file; the state emptyDir). Only the two mount paths
are remapped to those folders. From the host side of the veth, the readiness and liveness probes
(`httpGet` on the container port) are asked as the kubelet asks them.

The control loop's StatefulSet is not run this way: its Kubernetes Lease needs an API server and a
service account token, which nothing here provides.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modules.center import STATE_MOUNT
from modules.stack_files import STACKS_MOUNT
from tests.conftest import ROOT

HOST_ADDRESS, POD_ADDRESS = "198.18.250.1", "198.18.250.2"
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("setpriv") is None,
                                reason="network namespaces need root, iproute2 and setpriv (CI runs as root)")


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"ga-pod-{os.getpid() % 10000}"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "link", "add", f"{name}-h", "type", "veth", "peer", "name", f"{name}-p")
        sh("ip", "link", "set", f"{name}-p", "netns", name)
        sh("ip", "addr", "add", f"{HOST_ADDRESS}/30", "dev", f"{name}-h")
        sh("ip", "link", "set", f"{name}-h", "up")
        sh("ip", "netns", "exec", name, "ip", "addr", "add", f"{POD_ADDRESS}/30", "dev", f"{name}-p")
        sh("ip", "netns", "exec", name, "ip", "link", "set", f"{name}-p", "up")
        sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "link", "del", f"{name}-h"], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def probe(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://{POD_ADDRESS}:{port}{path}", timeout=2) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def test_each_prober_pod_starts_and_passes_its_probes_from_outside(netns: str) -> None:
    tmp_path = Path(tempfile.mkdtemp(prefix="ga-pods-"))  # readable by the pod's user (pytest's tmp folders are root-only)
    tmp_path.chmod(0o755)
    try:
        run_pods(netns, tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def run_pods(netns: str, tmp_path: Path) -> None:
    # The manifests as `globalaccel preview` renders them (its own process: the SDK's runtime state is global).
    subprocess.run([str(ROOT / ".venv" / "bin" / "globalaccel"), "preview", "--stack", "dev", "--out", str(tmp_path / "out")],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    manifests = sorted((tmp_path / "out" / "manifests").glob("*.yaml"))
    docs = [yaml.safe_load(p.read_text()) for p in manifests]
    config_maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
    probers = [d for d in docs if d["kind"] == "Deployment"]
    assert len(probers) == 4
    for number, deployment in enumerate(probers):
        pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        volume = next(v for v in pod["volumes"] if v["name"] == "stack")
        stacks = tmp_path / f"pod{number}" / "stacks"
        state = tmp_path / f"pod{number}" / "state"
        data = config_maps[volume["configMap"]["name"]]
        for item in volume["configMap"]["items"]:  # the ConfigMap's keys back to their paths, as the kubelet mounts them
            (stacks / item["path"]).parent.mkdir(parents=True, exist_ok=True)
            (stacks / item["path"]).write_text(data[item["key"]])
        state.mkdir(parents=True)
        uid = pod["securityContext"]["runAsUser"]
        os.chown(state, uid, pod["securityContext"]["runAsGroup"])
        args = [str(stacks) if a == STACKS_MOUNT else str(state) if a == STATE_MOUNT else a for a in container["args"]]
        assert args != container["args"]  # both mounts were there to remap
        cmd = ["ip", "netns", "exec", netns, "setpriv", f"--reuid={uid}", f"--regid={pod['securityContext']['runAsGroup']}",
               "--clear-groups", str(ROOT / ".venv" / "bin" / "globalaccel"), *args]
        # The container's environment as the kubelet fills it: a secretKeyRef resolves to the Secret's value (the
        # rendered Secret's value is redacted, so the namespace's key is a test value here).
        env = {"PATH": "/usr/bin:/bin", "HOME": str(state)}
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            assert ref is None or ref["name"] in secrets, f"{ref} names no Secret of the namespace"
            env[item["name"]] = "pod-test-shared-key" if ref is not None else str(item.get("value", ""))
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        port = container["readinessProbe"]["httpGet"]["port"]
        try:
            deadline = time.monotonic() + 60
            ready = 0
            while time.monotonic() < deadline and ready != 200:
                if proc.poll() is not None:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    raise AssertionError(f"{deployment['metadata']['name']} exited {proc.returncode}:\n{out[-3000:]}")
                try:
                    ready, _ = probe(port, container["readinessProbe"]["httpGet"]["path"])
                except OSError:
                    time.sleep(0.5)
            assert ready == 200, "readiness never passed"
            live, _ = probe(port, container["livenessProbe"]["httpGet"]["path"])
            assert live == 200
            _, body = probe(port, "/status")
            status = json.loads(body)
            assert status["stack"] == "dev" and status["backend"] == "embedded"
            vantage = args[args.index("--vantage") + 1]
            assert deployment["spec"]["template"]["spec"]["nodeSelector"]  # pinned to its center's region
            assert vantage in deployment["metadata"]["labels"]["globalaccel/center"]
        finally:
            proc.terminate()
            assert proc.wait(30) == 0  # SIGTERM: a clean stop, as the kubelet's termination expects
