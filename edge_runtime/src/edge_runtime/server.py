"""`edge_runtime serve`: a small local web page for a clinic device, standard library HTTP only.

GET / is the page (take or upload a photo); POST /predict takes the raw image bytes (and, for a
model with a clinical prior, ?age=&sex=&site= from the page's optional fields) and answers
JSON with the class, confidence, malignant risk, next step and the heatmap overlay as a PNG data
URL. Loopback by default; uploads above MAX_UPLOAD_BYTES are refused before they are read; a
file that is not an image gets a 400 with a plain message. One model, one lock: the interpreter
is not thread-safe.
"""

from __future__ import annotations

import base64
import html
import ipaddress
import io
import json
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs

from edge_runtime.classifier import DISCLAIMER, Classifier
from edge_runtime.errors import EdgeRuntimeError
from edge_runtime.preprocess import open_rgb

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def make_handler(clf: Classifier):
    lock = threading.Lock()
    page = (resources.files("edge_runtime") / "static" / "index.html").read_text(encoding="utf-8")
    model = clf.artifact.path.name + ("" if clf.site is None else f", thresholds of site {clf.site['site']}")
    page = (page.replace("{{DISCLAIMER}}", DISCLAIMER).replace("{{MODEL}}", html.escape(model))
            .replace("{{CONTEXT}}", _context_form(clf)))

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
            path, _, query = self.path.partition("?")
            if path != "/predict":
                return self._json(HTTPStatus.NOT_FOUND, {"error": f"POST the photo to /predict, not {self.path}"})
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self.close_connection = True
                return self._json(HTTPStatus.BAD_REQUEST, {"error": "Content-Length is not a number; send the photo "
                                                                    "as the request body"})
            if length <= 0:
                return self._json(HTTPStatus.BAD_REQUEST, {"error": "empty upload; choose a photo of the lesion"})
            if length > MAX_UPLOAD_BYTES:
                self.close_connection = True
                return self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                  {"error": f"photo is {length / 2**20:.1f} MB, above the "
                                            f"{MAX_UPLOAD_BYTES // 2**20} MB limit; send a smaller JPEG"})
            data = self.rfile.read(length)
            if len(data) < length:
                self.close_connection = True
                return self._json(HTTPStatus.BAD_REQUEST, {"error": f"upload ended after {len(data)} of {length} "
                                                                    "bytes; send the photo again"})
            try:
                context = _context(clf, query)
                rgb = open_rgb(data, "the uploaded file")
                with lock:
                    p = clf.predict(rgb, context=context)
            except EdgeRuntimeError as exc:
                return self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            except Exception as exc:  # a bug: answer in one line (the page shows it) and keep serving
                print(f"edge_runtime: internal error on an upload: {type(exc).__name__}: {exc}")
                return self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error ({type(exc).__name__}); "
                                                                              "see the server's log"})
            buf = io.BytesIO()
            if p.heatmap is not None:
                p.overlay().save(buf, format="PNG")
            self._json(HTTPStatus.OK, {**p.to_dict(), "disclaimer": DISCLAIMER, "heatmap_png": (
                "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()) if buf.tell() else None})

        def log_message(self, fmt, *args):  # one quiet line per request, no photo content
            print(f"{self.address_string()} {fmt % args}")

    return Handler


def _context_form(clf: Classifier) -> str:
    """Optional age, sex and body-site fields, offered only when the model's card has a clinical prior."""
    prior = clf.clinical
    if prior is None:
        return ""

    def select(name: str, values) -> str:
        options = "".join(f'<option value="{html.escape(v)}">{html.escape(v)}</option>' for v in values)
        return f'<select id="{name}"><option value="">not recorded</option>{options}</select>'
    return ('<fieldset><legend>Patient (optional; the model weighs it with the photo)</legend>'
            '<label>Age <input id="age" type="number" min="0" max="120" step="1"></label>'
            f'<label>Sex {select("sex", prior.sexes)}</label>'
            f'<label>Body site {select("site", prior.sites)}</label></fieldset>')


def _context(clf: Classifier, query: str):
    """The context in POST /predict?age=..&sex=..&site=.. (all optional); None when none is given."""
    from edge_runtime.clinical import Context

    q = {k: v[-1] for k, v in parse_qs(query).items()}
    if not q or clf.clinical is None:
        return None
    try:
        age = float(q["age"]) if q.get("age") else None
    except ValueError:
        raise EdgeRuntimeError(f"age {q['age']!r} is not a number of years; enter e.g. 55 or leave it empty") from None
    context = Context(age, q.get("sex") or None, q.get("site") or None)
    clf.clinical.check(context)
    return context


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


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
    if not is_loopback(host):
        print(f"edge_runtime: warning: --host {host} is reachable from the network, without a password or "
              "TLS; anyone who can reach it can upload photos. Use --host 127.0.0.1 to keep it on this device")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
