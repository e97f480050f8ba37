"""A small Hugging Face Hub-compatible HTTP server for tests (stdlib only, in memory, 127.0.0.1).

It implements just the endpoints the real ``huggingface_hub`` client (2.4, with
``HF_HUB_DISABLE_XET=1``) calls for ``create_repo``, ``upload_folder`` (preupload, LFS batch +
PUT, NDJSON commit), ``create_branch``, ``create_tag``, ``list_repo_refs``, ``repo_info``,
``list_repo_tree``, ``snapshot_download`` and ``hf_hub_download`` (HEAD/GET ``resolve`` with
``X-Repo-Commit``, ``ETag``, ``Range``), with the Hub's error headers (``X-Error-Code``:
RepoNotFound, RevisionNotFound, EntryNotFound). Files are kept whole in memory; every commit is
an immutable snapshot ``{path: bytes}``. A commit with ``create_pr=1`` opens pull request N:
``repo.prs[N]`` (and revision ``refs/pr/N``) is its commit, and the branch does not move.

Fault injection for tests: ``hub.truncate[path] = n`` serves only the first ``n`` bytes of that
file (with a matching ``Content-Length``, as a cut connection behind a proxy would), and
``hub.corrupt.add(path)`` flips bytes while keeping the size.

Usage::

    with FakeHub(token="hf_secret") as hub:
        os.environ["HF_ENDPOINT"] = hub.url
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["FakeHub", "git_blob_oid", "LFS_SUFFIXES"]

LFS_SUFFIXES = (".safetensors", ".onnx", ".parquet", ".png", ".bin", ".pt", ".npz")
LFS_THRESHOLD = 10 * 1024 * 1024  # the Hub stores files above 10 MB in LFS whatever their name
PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
TYPE_RE = r"(?P<type>model|dataset|space)s"
REPO_RE = r"(?P<ns>[\w.-]+)/(?P<name>[\w.-]+)"

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.onnx filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_oid(data: bytes) -> str:
    """Git's object id of a blob: sha1 of ``blob <size>\\0<content>``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _is_lfs(path: str, size: int) -> bool:
    return path.endswith(LFS_SUFFIXES) or size > LFS_THRESHOLD


@dataclass
class Repo:
    """One repo: commits are immutable ``{path: bytes}`` snapshots; refs point at them."""

    repo_type: str
    repo_id: str
    private: bool
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    prs: dict[int, str] = field(default_factory=dict)  # pull request number -> head commit
    messages: dict[str, str] = field(default_factory=dict)  # commit sha -> commit message

    def resolve(self, rev: str) -> str | None:
        """Branch, tag, ``refs/pr/N`` or full commit sha -> commit sha (None when unknown)."""
        if rev in self.branches:
            return self.branches[rev]
        if rev in self.tags:
            return self.tags[rev]
        m = re.fullmatch(r"refs/pr/(\d+)", rev)
        if m:
            return self.prs.get(int(m.group(1)))
        return rev if rev in self.commits else None

    def add_commit(self, files: dict[str, bytes], parent: str | None, message: str) -> str:
        seed = json.dumps([parent, message, time.time_ns(), sorted(files)]).encode()
        sha = hashlib.sha1(seed).hexdigest()
        self.commits[sha] = dict(files)
        self.messages[sha] = message
        return sha


class HubError(Exception):
    """An error answer: status, X-Error-Code and message."""

    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class FakeHub:
    """The in-memory Hub plus its threaded HTTP server on a free port of 127.0.0.1."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token  # when set, writes and private reads need ``Authorization: Bearer``
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs: dict[str, bytes] = {}  # sha256 -> content, filled by PUT before the commit
        self.truncate: dict[str, int] = {}
        self.corrupt: set[str] = set()
        self.requests: list[tuple[str, str]] = []  # (method, path) log, for assertions
        self.unhandled: list[tuple[str, str]] = []
        self.lock = threading.RLock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        assert self.server is not None, "server not started"
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ model
    def repo(self, repo_type: str, repo_id: str, authorized: bool) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not authorized):
            raise HubError(404, "RepoNotFound", f"Repository {repo_id} not found")
        return repo

    def commit_of(self, repo: Repo, rev: str) -> str:
        sha = repo.resolve(rev)
        if sha is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return sha

    def repo_url(self, repo: Repo) -> str:
        return f"{self.url}/{PREFIX[repo.repo_type]}{repo.repo_id}"

    def tree_entry(self, path: str, data: bytes) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "path": path, "size": len(data)}
        if _is_lfs(path, len(data)):
            pointer = (
                f"version https://git-lfs.github.com/spec/v1\n"
                f"oid sha256:{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n"
            ).encode()
            entry["oid"] = git_blob_oid(pointer)
            entry["lfs"] = {
                "oid": hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "pointerSize": len(pointer),
            }
        else:
            entry["oid"] = git_blob_oid(data)
        return entry


class _Handler(BaseHTTPRequestHandler):
    """Routes requests to small methods; every answer is JSON or file bytes."""

    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (quiet server)
        pass

    # ------------------------------------------------------------------ plumbing
    def _body(self) -> bytes:
        """The request body, read once (always read, so keep-alive connections stay in sync)."""
        if not hasattr(self, "_data"):
            length = int(self.headers.get("Content-Length") or 0)
            self._data = self.rfile.read(length) if length else b""
        return self._data

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _authorized(self) -> bool:
        token = self.hub.token
        return token is None or self.headers.get("Authorization") == f"Bearer {token}"

    def _require_write(self) -> None:
        if self.hub.token is not None and not self._authorized():
            raise HubError(401, None, "Invalid credentials in Authorization header")

    def _dispatch(self) -> None:
        self.__dict__.pop("_data", None)
        self._body()
        sent = self.headers.get("Authorization")
        if sent is not None and self.hub.token is not None and not self._authorized():
            # Like the Hub: a wrong token is refused even where no token is needed.
            message = "Invalid credentials in Authorization header"
            self._json(401, {"error": message}, {"X-Error-Message": message})
            return
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        self.hub.requests.append((self.command, path))
        for method, pattern, handler in ROUTES:
            m = re.fullmatch(pattern, path)
            if m and method == self.command:
                try:
                    with self.hub.lock:
                        groups = {k: unquote(v) for k, v in m.groupdict().items() if v is not None}
                        handler(self, query, **groups)
                except HubError as err:
                    headers = {"X-Error-Message": err.message}
                    if err.code:
                        headers["X-Error-Code"] = err.code
                    self._json(err.status, {"error": err.message}, headers)
                except Exception as exc:  # a bug here: answer 400 so the client fails fast
                    self.hub.unhandled.append((self.command, f"{self.path}: {exc!r}"))
                    self._json(400, {"error": f"fakehub: {exc!r}"})
                return
        self.hub.unhandled.append((self.command, self.path))
        print(f"fakehub: unhandled {self.command} {self.path}", file=sys.stderr)
        self._json(404, {"error": f"fakehub: no route for {self.command} {path}"})

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    # ------------------------------------------------------------------ repos and refs
    def create_repo(self, query: dict[str, list[str]]) -> None:
        self._require_write()
        body = json.loads(self._body())
        repo_type = body.get("type") or "model"
        repo_id = f"{body['organization']}/{body['name']}"
        key = (repo_type, repo_id)
        if key in self.hub.repos:
            url = self.hub.repo_url(self.hub.repos[key])
            self._json(409, {"error": "You already created this repo", "url": url})
            return
        private = body.get("visibility") == "private" or bool(body.get("private"))
        repo = Repo(repo_type, repo_id, private)
        repo.branches["main"] = repo.add_commit(
            {".gitattributes": GITATTRIBUTES}, None, "initial commit"
        )
        self.hub.repos[key] = repo
        self._json(200, {"url": self.hub.repo_url(repo)})

    def validate_yaml(self, query: dict[str, list[str]]) -> None:
        self._body()
        self._json(200, {"errors": [], "warnings": []})

    def repo_info(
        self, query: dict[str, list[str]], type: str, ns: str, name: str, rev: str = "main"
    ) -> None:
        repo = self.hub.repo(type, f"{ns}/{name}", self._authorized())
        sha = self.hub.commit_of(repo, rev)
        files = repo.commits[sha]
        self._json(
            200,
            {
                "id": repo.repo_id,
                "_id": repo.repo_id,
                "sha": sha,
                "private": repo.private,
                "siblings": [{"rfilename": p} for p in sorted(files)],
                "lastModified": "2024-01-01T00:00:00.000Z",
                "tags": [],
            },
        )

    def tree(
        self, query: dict[str, list[str]], type: str, ns: str, name: str, rev: str, sub: str = ""
    ) -> None:
        repo = self.hub.repo(type, f"{ns}/{name}", self._authorized())
        files = repo.commits[self.hub.commit_of(repo, rev)]
        recursive = query.get("recursive", ["False"])[0].lower() == "true"
        prefix = f"{sub.strip('/')}/" if sub else ""
        entries, folders = [], set()
        for path in sorted(files):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            parts = rest.split("/")
            for i in range(1, len(parts) if recursive else min(len(parts), 2)):
                folders.add(prefix + "/".join(parts[:i]))
            if recursive or len(parts) == 1:
                entries.append(self.hub.tree_entry(path, files[path]))
        dirs = [
            {"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest()}
            for d in sorted(folders)
        ]
        if prefix and not entries and not dirs:
            raise HubError(404, "EntryNotFound", f"{sub} does not exist")
        self._json(200, dirs + entries)

    def refs(self, query: dict[str, list[str]], type: str, ns: str, name: str) -> None:
        repo = self.hub.repo(type, f"{ns}/{name}", self._authorized())

        def refs(items: dict[str, str], kind: str) -> list[dict[str, str]]:
            return [
                {"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": sha}
                for n, sha in sorted(items.items())
            ]

        self._json(
            200,
            {
                "branches": refs(repo.branches, "heads"),
                "tags": refs(repo.tags, "tags"),
                "converts": [],
                "pullRequests": [
                    {"name": f"refs/pr/{n}", "ref": f"refs/pr/{n}", "targetCommit": sha}
                    for n, sha in sorted(repo.prs.items())
                ],
            },
        )

    def create_ref(
        self, query: dict[str, list[str]], type: str, ns: str, name: str, kind: str, rev: str
    ) -> None:
        self._require_write()
        repo = self.hub.repo(type, f"{ns}/{name}", True)
        body = json.loads(self._body() or b"{}")
        if kind == "branch":  # POST .../branch/{name} {"startingPoint": rev}
            if rev in repo.branches:
                raise HubError(409, None, f"Branch {rev} already exists")
            repo.branches[rev] = self.hub.commit_of(repo, body.get("startingPoint") or "main")
        else:  # POST .../tag/{rev} {"tag": name}
            tag = body["tag"]
            if tag in repo.tags:
                raise HubError(409, None, f"Tag {tag} already exists")
            repo.tags[tag] = self.hub.commit_of(repo, rev)
        self._json(200, {})

    # ------------------------------------------------------------------ uploads
    def preupload(
        self, query: dict[str, list[str]], type: str, ns: str, name: str, rev: str
    ) -> None:
        self._require_write()
        repo = self.hub.repo(type, f"{ns}/{name}", True)
        current = repo.commits[self.hub.commit_of(repo, rev)]
        out = []
        for f in json.loads(self._body())["files"]:
            lfs = _is_lfs(f["path"], f["size"])
            old = current.get(f["path"])
            oid = None  # the client compares it with its own to skip unchanged files
            if old is not None:
                oid = hashlib.sha256(old).hexdigest() if lfs else git_blob_oid(old)
            mode = "lfs" if lfs else "regular"
            out.append({"path": f["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._json(200, {"files": out})

    def lfs_batch(self, query: dict[str, list[str]], ns: str, name: str, prefix: str = "") -> None:
        self._require_write()
        repo_type = {"": "model", "datasets/": "dataset", "spaces/": "space"}[prefix or ""]
        self.hub.repo(repo_type, f"{ns}/{name}", True)
        objects = []
        for obj in json.loads(self._body())["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.hub.lfs:
                href = f"{self.hub.url}/_lfs/{obj['oid']}"
                entry["actions"] = {"upload": {"href": href, "header": {}}}
            objects.append(entry)
        self._json(200, {"transfer": "basic", "objects": objects})

    def lfs_put(self, query: dict[str, list[str]], oid: str) -> None:
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, None, "LFS upload does not match its oid")
        self.hub.lfs[oid] = data
        self._json(200, {})

    def commit(self, query: dict[str, list[str]], type: str, ns: str, name: str, rev: str) -> None:
        self._require_write()
        repo = self.hub.repo(type, f"{ns}/{name}", True)
        if rev not in repo.branches:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev} is not a branch")
        parent = repo.branches[rev]
        files = dict(repo.commits[parent])
        message = ""
        for line in self._body().splitlines():
            op = json.loads(line)
            key, value = op["key"], op["value"]
            if key == "header":
                message = value.get("summary", "")
                if value.get("parentCommit") not in (None, parent):
                    raise HubError(412, None, "A commit has happened since parentCommit")
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                if value["oid"] not in self.hub.lfs:
                    raise HubError(422, None, f"LFS object {value['oid']} was never uploaded")
                files[value["path"]] = self.hub.lfs[value["oid"]]
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                folder = value["path"].rstrip("/") + "/"
                files = {p: d for p, d in files.items() if not p.startswith(folder)}
        sha = repo.add_commit(files, parent, message)
        url = f"{self.hub.repo_url(repo)}/commit/{sha}"
        answer: dict[str, Any] = {"success": True, "commitOid": sha, "commitUrl": url}
        if query.get("create_pr", ["0"])[0] in ("1", "true", "True"):
            num = len(repo.prs) + 1
            repo.prs[num] = sha  # the branch does not move until the PR is merged
            answer["pullRequestUrl"] = f"{self.hub.repo_url(repo)}/discussions/{num}"
        else:
            repo.branches[rev] = sha
        self._json(200, answer)

    # ------------------------------------------------------------------ downloads
    def resolve(
        self, query: dict[str, list[str]], ns: str, name: str, rev: str, path: str, prefix: str = ""
    ) -> None:
        repo_type = {"": "model", "datasets/": "dataset", "spaces/": "space"}[prefix or ""]
        repo = self.hub.repo(repo_type, f"{ns}/{name}", self._authorized())
        sha = self.hub.commit_of(repo, rev)
        files = repo.commits[sha]
        if path not in files:
            raise HubError(404, "EntryNotFound", f"{path} does not exist at {rev}")
        data = files[path]
        entry = self.hub.tree_entry(path, data)
        etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if self.command == "GET":
            if path in self.hub.corrupt:
                data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
            if path in self.hub.truncate:
                data = data[: self.hub.truncate[path]]
        status = 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        if match and self.command == "GET":
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            total = len(files[path])
            headers["Content-Range"] = f"bytes {start}-{end}/{total}"
            data, status = data[start : end + 1], 206
        self._send(status, data, headers, content_type="application/octet-stream")


REV = r"(?P<rev>[^/]+)"
ROUTES: list[tuple[str, str, Any]] = [
    ("POST", r"/api/repos/create", _Handler.create_repo),
    ("POST", r"/api/validate-yaml", _Handler.validate_yaml),
    ("GET", rf"/api/{TYPE_RE}/{REPO_RE}", _Handler.repo_info),
    ("GET", rf"/api/{TYPE_RE}/{REPO_RE}/revision/{REV}", _Handler.repo_info),
    ("GET", rf"/api/{TYPE_RE}/{REPO_RE}/tree/{REV}(?:/(?P<sub>.+))?", _Handler.tree),
    ("GET", rf"/api/{TYPE_RE}/{REPO_RE}/refs", _Handler.refs),
    ("POST", rf"/api/{TYPE_RE}/{REPO_RE}/(?P<kind>branch|tag)/{REV}", _Handler.create_ref),
    ("POST", rf"/api/{TYPE_RE}/{REPO_RE}/preupload/{REV}", _Handler.preupload),
    ("POST", rf"/api/{TYPE_RE}/{REPO_RE}/commit/{REV}", _Handler.commit),
    (
        "POST",
        rf"/(?P<prefix>datasets/|spaces/)?{REPO_RE}\.git/info/lfs/objects/batch",
        _Handler.lfs_batch,
    ),
    ("PUT", r"/_lfs/(?P<oid>[0-9a-f]{64})", _Handler.lfs_put),
    (
        "HEAD",
        rf"/(?P<prefix>datasets/|spaces/)?{REPO_RE}/resolve/{REV}/(?P<path>.+)",
        _Handler.resolve,
    ),
    (
        "GET",
        rf"/(?P<prefix>datasets/|spaces/)?{REPO_RE}/resolve/{REV}/(?P<path>.+)",
        _Handler.resolve,
    ),
]


if __name__ == "__main__":  # manual use: python tests/fakehub.py
    with FakeHub() as hub:
        print(f"fake Hub at {hub.url}; Ctrl-C to stop", file=sys.stderr)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
