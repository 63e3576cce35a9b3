"""The viewer's HTTP server (standard library ``http.server``): GET only, files only from inside their folder,
only for a Host header that is its own address (kit.hostcheck), and no CORS header: other sites cannot read it.

Routes (``source`` is ``out`` for OUTPUT_DIR or ``job:<name>`` for a listener job):
  /                          the results page (table of studies and of pipeline runs)
  /study?source=S&id=ID      the viewer page of one study (NiiVue)
  /static/<file>             the page's own files (kit/view/static)
  /vendor/niivue.js          NiiVue's ES module bundle (kit/view/node_modules, installed by npm ci)
  /api/overview?source=S     studies, runs and problems as JSON
  /api/study?source=S&id=ID  one study as JSON
  /files/<rel>?source=S      a file of the results folder
  /ct?source=S&id=ID         the CT of a study (found in the input folder)
  /logs/<rel>?source=S       a log of a run (OUTPUT_DIR: $ODK_RUN_DIR/pipeline; a job: its folder)
"""

from __future__ import annotations

import json
import mimetypes
import shutil
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from kit.hostcheck import AllowedHosts

from . import runs, studies
from .api import overview, study_json
from .paths import Missing, Outside, inside

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
NIIVUE = HERE / "node_modules" / "@niivue" / "niivue" / "dist" / "index.js"
# Everything from this server: nothing is loaded from anywhere else.
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; "
       "img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; connect-src 'self' data: blob:; "
       "font-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


@dataclass(frozen=True)
class ViewConfig:
    output_dir: Path
    input_dir: Path | None
    run_dir: Path

    @property
    def jobs_root(self) -> Path:
        return self.run_dir / "listen" / "jobs"

    @property
    def pipeline_logs(self) -> Path:
        return self.run_dir / "pipeline"

    def source(self, key: str) -> studies.Source | None:
        if key == "out":
            logs = sorted(self.pipeline_logs.glob("*.log")) if self.pipeline_logs.is_dir() else []
            if self.output_dir.is_dir():
                logs += sorted(self.output_dir.rglob("*.log"))
            return studies.Source(key="out", title=f"results in {self.output_dir}", results=self.output_dir,
                                  inputs=self.input_dir, logs=tuple(logs))
        if key.startswith("job:"):
            return runs.job_source(self.jobs_root, key.removeprefix("job:"))
        return None

    def log_root(self, key: str) -> Path | None:
        if key == "out":
            return self.pipeline_logs
        if key.startswith("job:"):
            return runs.job_folder(self.jobs_root, key.removeprefix("job:"))
        return None


class ViewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], config: ViewConfig, extra_hosts: str = "") -> None:
        self.config = config
        super().__init__(address, Handler)
        # Known once bound (port 0: the OS picks it). extra_hosts: VIEW_HOST, names the user opens it by.
        self.allowed_hosts = AllowedHosts.for_port(self.server_address[1], extra_hosts)


class HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def content_type(path: Path) -> str:
    if path.name.endswith((".nii.gz", ".nii")):
        return "application/octet-stream"
    if path.suffix in (".js", ".mjs"):
        return "text/javascript; charset=utf-8"
    if path.suffix == ".log":
        return "text/plain; charset=utf-8"
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


class Handler(BaseHTTPRequestHandler):
    server: ViewServer
    server_version = "odk-view"
    protocol_version = "HTTP/1.1"

    def __getattr__(self, name: str):
        # http.server dispatches METHOD to do_METHOD: every method but GET is answered 405.
        if name.startswith("do_") and name != "do_GET":
            return self.refuse_method
        raise AttributeError(name)

    def refuse_method(self) -> None:
        # The request's body is not read: the connection ends with this answer.
        self.close_connection = True
        if self.refuse_foreign_host():
            return
        self.send_text(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not allowed: this server only serves GET\n",
                       extra={"Allow": "GET", "Connection": "close"})

    def log_message(self, format: str, *args: object) -> None:
        return  # quiet: errors reach the page

    def refuse_foreign_host(self) -> bool:
        """403 for a Host that is not this server's (a page of another site reaching it by DNS rebinding)."""
        host = self.headers.get("Host")
        if self.server.allowed_hosts.allows(host):
            return False
        self.close_connection = True
        self.send_text(HTTPStatus.FORBIDDEN, self.server.allowed_hosts.refusal(host), extra={"Connection": "close"})
        return True

    def do_GET(self) -> None:
        if self.refuse_foreign_host():
            return
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            self.route(path, query)
        except HttpError as exc:
            self.send_text(exc.status, f"{exc}\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def route(self, path: str, query: dict[str, str]) -> None:
        cfg = self.server.config
        if path in ("/", "/index.html"):
            return self.send_file(STATIC / "index.html")
        if path == "/study":
            return self.send_file(STATIC / "study.html")
        if path.startswith("/static/"):
            return self.send_file(self.inside(STATIC, path.removeprefix("/static/")))
        if path == "/vendor/niivue.js":
            if not NIIVUE.is_file():
                raise HttpError(HTTPStatus.NOT_FOUND, "NiiVue is not installed: run scripts/setup-viewer.sh")
            return self.send_file(NIIVUE)
        if path == "/favicon.ico":
            raise HttpError(HTTPStatus.NOT_FOUND, "no icon")
        source = self.source(query)
        if path == "/api/overview":
            return self.send_json(overview(cfg, source))
        if path == "/api/study":
            return self.send_json(study_json(self.study(source, query), source))
        if path.startswith("/files/"):
            return self.send_file(self.inside(source.results, path.removeprefix("/files/")))
        if path == "/ct":
            study = self.study(source, query)
            if study.ct is None:
                raise HttpError(HTTPStatus.NOT_FOUND, study.ct_problem)
            return self.send_file(study.ct)
        if path.startswith("/logs/"):
            root = cfg.log_root(source.key)
            rel = path.removeprefix("/logs/")
            if root is None or not rel.endswith(".log"):
                raise HttpError(HTTPStatus.NOT_FOUND, "no such log")
            return self.send_file(self.inside(root, rel))
        raise HttpError(HTTPStatus.NOT_FOUND, f"nothing at {path}")

    def source(self, query: dict[str, str]) -> studies.Source:
        source = self.server.config.source(query.get("source", "out"))
        if source is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no results folder '{query.get('source')}'")
        return source

    def study(self, source: studies.Source, query: dict[str, str]) -> studies.Study:
        wanted = query.get("id", "")
        for s in studies.scan(source):
            if s.id == wanted:
                return s
        raise HttpError(HTTPStatus.NOT_FOUND, f"no study '{wanted}' in {source.results}")

    @staticmethod
    def inside(root: Path, rel: str) -> Path:
        try:
            return inside(root, rel)
        except Outside:
            raise HttpError(HTTPStatus.FORBIDDEN, f"refused: '{rel}' is outside the folder served") from None
        except Missing:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no file '{rel}'") from None

    def headers_common(self, ctype: str, length: int) -> None:
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)

    def send_text(self, status: HTTPStatus, text: str, extra: dict[str, str] | None = None) -> None:
        body = text.encode()
        self.send_response(status)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.headers_common("text/plain; charset=utf-8", len(body))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, data: object) -> None:
        body = json.dumps(data).encode()
        self.send_response(HTTPStatus.OK)
        self.headers_common("application/json", len(body))
        self.end_headers()
        self.wfile.write(body)

    def send_file(self, path: Path) -> None:
        try:
            f = path.open("rb")
        except OSError:
            raise HttpError(HTTPStatus.NOT_FOUND, f"cannot read {path.name}") from None
        with f:
            size = path.stat().st_size
            self.send_response(HTTPStatus.OK)
            self.headers_common(content_type(path), size)
            self.end_headers()
            shutil.copyfileobj(f, self.wfile)
