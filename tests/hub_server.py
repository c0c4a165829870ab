"""A local HTTP endpoint that speaks the part of the Hugging Face Hub API an upload uses.

The public hub cannot be reached from here, so push tests point HF_ENDPOINT at this server,
which records every call and the files of each commit (all files are declared 'regular', so
they arrive inline, base64-encoded, in the commit payload).
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict]] = []
        self.files: dict[str, bytes] = {}
        self.commit_message: str | None = None
        self.validated_yaml: str | None = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                return None

            def _reply(self, body: dict, status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                recorder.calls.append(("GET", self.path, dict(self.headers)))
                self._reply({"id": "x", "sha": "0" * 40, "siblings": []})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                recorder.calls.append(("POST", self.path, dict(self.headers)))
                if self.path.startswith("/api/repos/create"):
                    body = json.loads(raw)
                    repo = f"{body.get('organization') or body.get('namespace')}/{body['name']}"
                    self._reply({"url": f"{recorder.url}/datasets/{repo}"})
                elif self.path.startswith("/api/validate-yaml"):
                    recorder.validated_yaml = json.loads(raw).get("content")
                    self._reply({"errors": [], "warnings": []})
                elif "/preupload/" in self.path:
                    files = json.loads(raw)["files"]
                    self._reply(
                        {
                            "files": [
                                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                for f in files
                            ]
                        }
                    )
                elif "/commit/" in self.path:
                    for line in raw.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "header":
                            recorder.commit_message = item["value"]["summary"]
                        elif item["key"] == "file":
                            recorder.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    repo = self.path.split("/api/datasets/", 1)[1].split("/commit/", 1)[0]
                    oid = "1" * 40
                    self._reply(
                        {"commitUrl": f"{recorder.url}/datasets/{repo}/commit/{oid}", "commitOid": oid}
                    )
                else:
                    self._reply({"error": f"unexpected {self.path}"}, 404)

        return Handler
