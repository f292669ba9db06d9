"""`edge_runtime serve`: a small local web page for a clinic device, standard library HTTP only.

GET / is the page (take or upload a photo); POST /predict takes the raw image bytes and answers
JSON with the class, confidence, malignant risk, next step and the heatmap overlay as a PNG data
URL. Loopback by default; uploads above MAX_UPLOAD_BYTES are refused before they are read; a
file that is not an image gets a 400 with a plain message. One model, one lock: the interpreter
is not thread-safe.
"""

from __future__ import annotations

import base64
import html
import io
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

from edge_runtime.classifier import DISCLAIMER, Classifier
from edge_runtime.errors import EdgeRuntimeError
from edge_runtime.preprocess import open_rgb

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def make_handler(clf: Classifier):
    lock = threading.Lock()
    page = (resources.files("edge_runtime") / "static" / "index.html").read_text(encoding="utf-8")
    model = clf.artifact.path.name + ("" if clf.site is None else f", thresholds of site {clf.site['site']}")
    page = page.replace("{{DISCLAIMER}}", DISCLAIMER).replace("{{MODEL}}", html.escape(model))

    class Handler(BaseHTTPRequestHandler):
        server_version = "edge_runtime"

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: dict) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def do_GET(self):
            if self.path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page at {self.path}; open /"})

        def do_POST(self):
            if self.path != "/predict":
                return self._json(HTTPStatus.NOT_FOUND, {"error": f"POST the photo to /predict, not {self.path}"})
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0:
                return self._json(HTTPStatus.BAD_REQUEST, {"error": "empty upload; choose a photo of the lesion"})
            if length > MAX_UPLOAD_BYTES:
                self.close_connection = True
                return self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                  {"error": f"photo is {length / 2**20:.1f} MB, above the "
                                            f"{MAX_UPLOAD_BYTES // 2**20} MB limit; send a smaller JPEG"})
            data = self.rfile.read(length)
            try:
                rgb = open_rgb(data, "the uploaded file")
                with lock:
                    p = clf.predict(rgb)
            except EdgeRuntimeError as exc:
                return self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            buf = io.BytesIO()
            if p.heatmap is not None:
                p.overlay().save(buf, format="PNG")
            self._json(HTTPStatus.OK, {**p.to_dict(), "disclaimer": DISCLAIMER, "heatmap_png": (
                "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()) if buf.tell() else None})

        def log_message(self, fmt, *args):  # one quiet line per request, no photo content
            print(f"{self.address_string()} {fmt % args}")

    return Handler


def make_server(model, host: str = "127.0.0.1", port: int = 8080, threads: int = 4,
                site=None) -> ThreadingHTTPServer:
    clf = Classifier.load(model, threads, site=site)
    return ThreadingHTTPServer((host, port), make_handler(clf))


def serve(model, host: str = "127.0.0.1", port: int = 8080, threads: int = 4, site=None) -> None:
    try:
        server = make_server(model, host, port, threads, site)
    except OSError as exc:
        raise EdgeRuntimeError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None
    print(f"edge_runtime: serving {model} at http://{host}:{server.server_address[1]}/ (Ctrl+C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
