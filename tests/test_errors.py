"""Expected failures from outside the program (a full disk, an unreachable hub, a server that
answers garbage) end as one line naming what and where and the fix, exit code 2, no traceback.

Every case is real: a real process on a real full tmpfs (in a private mount namespace, where the
machine allows one), a real closed port, a real HTTP server that answers malformed JSON.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from textsynth.config import SCHEMA_VERSION
from textsynth.pipeline_file import load_pipeline

from .conftest import ROOT, SENTIMENT
from .helpers import cli, one_line
from .servers import free_port

pytestmark = pytest.mark.slow  # whole builds, servers or subprocesses: not in the everyday tier


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


needs_tmpfs = pytest.mark.skipif(not _can_mount_tmpfs(), reason="no private tmpfs mounts on this machine")


def _on_full_disk(disk: Path, prepare: str, *args: str) -> subprocess.CompletedProcess:
    """Run the CLI with `disk` a small tmpfs: `prepare` (shell) runs first, then the disk is filled."""
    disk.mkdir(parents=True, exist_ok=True)
    cli = shlex.join([sys.executable, str(ROOT / "cli.py"), *args])
    script = (
        f"mount -t tmpfs -o size=2m tmpfs {shlex.quote(str(disk))} && {prepare} && "
        f"(dd if=/dev/zero of={shlex.quote(str(disk / 'filler'))} bs=4k 2>/dev/null; true) && exec {cli}"
    )
    return subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _fake_run(run: Path) -> None:
    """A finished-looking run directory: manifest with the shipped config, three kept records."""
    config = load_pipeline(SENTIMENT).model_dump(mode="json")
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(
        json.dumps({"schema_version": SCHEMA_VERSION, "config": config, "seed": 7})
    )
    records = [
        {
            "id": f"r{i}",
            "label": label,
            "attributes": {},
            "text": f"A {label} review number {i}.",
            "status": "kept",
        }
        for i, label in enumerate(["positive", "negative", "neutral"] * 2)
    ]
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


@needs_tmpfs
def test_disk_full_build_names_the_file_and_never_advises_force(tmp_path):
    disk = tmp_path / "disk"
    proc = _on_full_disk(disk, "true", "build", str(SENTIMENT), "--n", "6", "--out", str(disk / "run"))
    line = one_line(proc)
    assert "no space left on device" in line and str(disk / "run") in line
    assert "--force" not in line.replace("no need for --force", "")


@needs_tmpfs
def test_disk_full_export_isone_line(tmp_path):
    _fake_run(tmp_path / "template")
    disk = tmp_path / "disk"
    prepare = shlex.join(["cp", "-r", str(tmp_path / "template"), str(disk / "run")])
    proc = _on_full_disk(disk, prepare, "export", str(disk / "run"))
    line = one_line(proc)
    assert "no space left on device" in line and str(disk / "run") in line
    assert "--force" not in line.replace("no need for --force", "")


def test_push_to_an_unreachable_hub_isone_line(tmp_path):
    run = tmp_path / "run"
    (run / "hub").mkdir(parents=True)
    (run / "hub" / "README.md").write_text("card\n")
    port = free_port()  # nothing listens there
    proc = cli(
        "push",
        str(run),
        "--repo",
        "me/data",
        "--token",
        "hf_secret",
        env={"HF_ENDPOINT": f"http://127.0.0.1:{port}"},
    )
    line = one_line(proc)
    assert f"127.0.0.1:{port}" in line and "hf_secret" not in proc.stderr


class _Garbage:
    """An HTTP server on 127.0.0.1 answering every POST with `body` (valid JSON, wrong shape)."""

    def __init__(self, body: dict) -> None:
        payload = json.dumps(body).encode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def garbage(request) -> Iterator[_Garbage]:
    server = _Garbage(request.param)
    yield server
    server.close()


def _server_pipeline(project: Path, source: Path, base_url: str) -> Path:
    data = yaml.safe_load(source.read_text())
    data["n"] = 4
    data["model"] = {"backend": "openai", "base_url": base_url, "name": "m", "max_retries": 0}
    data.setdefault("quality", {})["top_up_rounds"] = 0
    data.setdefault("generation", {})["guidance_scale"] = 1  # servers decode no guidance rows
    data.get("templates", {}).pop("assistant", None)  # nor continue a reply's opening over chat
    shutil.copytree(ROOT / "prompts", project / "prompts", dirs_exist_ok=True)
    path = project / "pipelines" / source.name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("garbage", [{"choices": []}, {"result": "ok"}], indirect=True)
def test_malformed_server_response_isone_line(garbage, tmp_path):
    path = _server_pipeline(tmp_path, SENTIMENT, garbage.base_url)
    proc = cli("build", str(path), "--out", str(tmp_path / "run"), "--quiet")
    line = one_line(proc)
    assert "malformed response" in line and garbage.base_url in line


@pytest.mark.parametrize(
    "garbage",
    [{"choices": [{"message": {"content": "A fine answer."}, "finish_reason": "stop"}]}],
    indirect=True,
)
def test_judge_on_a_server_without_logprobs_isone_line(garbage, tmp_path):
    path = _server_pipeline(tmp_path, ROOT / "pipelines" / "instructions.yaml", garbage.base_url)
    proc = cli("build", str(path), "--out", str(tmp_path / "run"), "--quiet")
    line = one_line(proc)
    assert "returned no logprobs" in line and garbage.base_url in line
