"""Real OpenAI-compatible servers on 127.0.0.1 for backend tests, started and stopped by the tests.

`transformers serve` (transformers[serving], not written by this project) serves a dense copy of
the embedded model. `Flaky` is a fault injector in front of it: it answers 429 (with Retry-After)
to the first requests and then forwards to the real server, a fault the real server does not
produce on demand.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """`transformers serve` with the embedded model's dense copy preloaded."""

    def __init__(self, model_dir: str, port: int | None = None) -> None:
        self.model_dir = model_dir
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        exe = Path(sys.executable).with_name("transformers")
        return [str(exe), "serve", "--host", "127.0.0.1", "--port", str(self.port), self.model_dir]

    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def start(self, timeout: float = 180) -> ServeProcess:
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.command()[:2]} exited with {self.proc.returncode}")
            try:
                if httpx.get(self.ready_url(), timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{self.command()[:2]} did not answer {self.ready_url()} in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None


class LlamaCppServer(ServeProcess):
    """llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) on the embedded GGUF file."""

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            self.model_dir,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            "2048",
            "--logits_all",
            "true",
        ]

    def ready_url(self) -> str:
        return f"{self.base_url}/models"


class Flaky:
    """Answers 429 to the first `failures` POSTs, then forwards to `upstream`; counts both."""

    def __init__(self, upstream: str, failures: int) -> None:
        self.upstream = upstream.rstrip("/")
        self.failures = failures
        self.seen = 0
        self.lock = threading.Lock()
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with flaky.lock:
                    flaky.seen += 1
                    refuse = flaky.seen <= flaky.failures
                if refuse:
                    self.send_response(429)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path = self.path.removeprefix("/v1")
                reply = httpx.post(
                    flaky.upstream + path,
                    content=body,
                    timeout=300,
                    headers={"Content-Type": "application/json"},
                )
                self.send_response(reply.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
