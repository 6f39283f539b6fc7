"""A local HTTP server in the Hugging Face Hub's API shape, serving tiny repos (for `HF_ENDPOINT`).

Routes, as huggingface_hub 2.x calls them:
- `GET /api/models/{org}/{name}[/revision/{rev}]?blobs=true`: the repo's commit (`sha`) and its
  `siblings` with `size` and, for LFS files, `lfs: {sha256, size, pointerSize}`;
- `GET|HEAD /{org}/{name}/resolve/{rev}/{path}`: the file, with `ETag`, `X-Repo-Commit` (and
  `X-Linked-Etag`/`X-Linked-Size` for LFS files); a `Range: bytes=N-` request gets 206 with
  `Content-Range`.
Every request is recorded (`requests`: method, path, Range).  `delay` slows each `chunk` of a file
body, so a test can cancel in the middle of one.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS_MIN = 1024  # files this big or bigger are "LFS" files (sha256 ETag)


class HubServer:
    """`repos`: {"org/name": {"path/in/repo": bytes}}; start() returns self, url is its endpoint."""

    def __init__(self, repos: dict[str, dict[str, bytes]], chunk: int = 64 << 10, delay: float = 0.0):
        self.repos = repos
        self.commits = {r: hashlib.sha1(r.encode()).hexdigest() for r in repos}
        self.chunk, self.delay = chunk, delay
        self.requests: list[tuple[str, str, str | None]] = []
        self.bytes_sent: dict[str, int] = {}
        self.corrupt: set[str] = set()   # files whose bytes are sent with the last byte flipped
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> HubServer:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _json(self, code: int, obj: object) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _serve(self, body: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                hub.requests.append((self.command, path, self.headers.get("Range")))
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 4:
                    repo = "/".join(parts[2:4])
                    if repo not in hub.repos:
                        return self._json(404, {"error": "Repository not found"})
                    sibs = []
                    for name, data in sorted(hub.repos[repo].items()):
                        s = {"rfilename": name, "size": len(data),
                             "blobId": hashlib.sha1(data).hexdigest()}
                        if len(data) >= LFS_MIN:
                            s["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                        "pointerSize": 130}
                        sibs.append(s)
                    return self._json(200, {"id": repo, "modelId": repo, "sha": hub.commits[repo],
                                            "siblings": sibs, "private": False, "tags": []})
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo, name = "/".join(parts[:2]), "/".join(parts[4:])
                    data = hub.repos.get(repo, {}).get(name)
                    if data is None:
                        return self._json(404, {"error": "Entry not found"})
                    sent = data[:-1] + bytes([data[-1] ^ 1]) if name in hub.corrupt else data
                    start = 0
                    rng = self.headers.get("Range")
                    if rng and rng.startswith("bytes="):
                        start = int(rng[6:].split("-")[0] or 0)
                        if start >= len(data):
                            self.send_response(416)
                            self.end_headers()
                            return
                    etag = hashlib.sha256(data).hexdigest() if len(data) >= LFS_MIN else \
                        hashlib.sha1(data).hexdigest()
                    self.send_response(206 if start else 200)
                    self.send_header("ETag", f'"{etag}"')
                    self.send_header("X-Repo-Commit", hub.commits[repo])
                    if len(data) >= LFS_MIN:
                        self.send_header("X-Linked-Etag", f'"{etag}"')
                        self.send_header("X-Linked-Size", str(len(data)))
                    if start:
                        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    self.send_header("Content-Length", str(len(data) - start))
                    self.send_header("Accept-Ranges", "bytes")
                    self.end_headers()
                    if not body:
                        return
                    try:
                        for i in range(start, len(data), hub.chunk):
                            self.wfile.write(sent[i:i + hub.chunk])
                            self.wfile.flush()
                            hub.bytes_sent[name] = hub.bytes_sent.get(name, 0) + len(data[i:i + hub.chunk])
                            if hub.delay:
                                time.sleep(hub.delay)
                    except (BrokenPipeError, ConnectionResetError):
                        return
                    return
                return self._json(404, {"error": f"no route {path}"})

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


def tiny_svd_repo(big: int = 3 << 20, seed: int = 0) -> dict[str, bytes]:
    """A diffusers folder `check_folder` accepts: model_index.json, one component with its config
    and a weights file of `big` random bytes, plus a small README that no layout asks for."""
    import random
    rnd = random.Random(seed)
    return {
        "model_index.json": json.dumps({"_class_name": "StableVideoDiffusionPipeline",
                                        "unet": ["diffusers", "UNetSpatioTemporalConditionModel"]}).encode(),
        "unet/config.json": b'{"_class_name": "UNetSpatioTemporalConditionModel"}',
        "unet/diffusion_pytorch_model.safetensors": rnd.randbytes(big),
        "README.md": b"tiny",
    }
