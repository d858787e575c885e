"""Helpers for tests/test_deploy.py: real `ray start` processes, each stopped by its pid.

Every process is started in its own session (start_new_session=True) so that it and the
Ray daemons it forks can be signalled as one process group, by its id; anything left over
that names one of our temp dirs on its command line is then killed by pid. Never
`ray stop` (it would stop other users' Ray on this host).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BIN = Path(PYTHON).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(home: Path, auth: str, token_path: Path | None = None) -> dict:
    """Environment for a Ray process or client: own HOME, explicit auth mode, our code on
    PYTHONPATH, the venv's `ray`/`python` first on PATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RAY_") and k not in ("PYTHONPATH", "HOME")}
    env.update({
        "HOME": str(home), "RAY_AUTH_MODE": auth, "PYTHONPATH": str(REPO),
        "PATH": f"{BIN}:{env.get('PATH', '')}", "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_DEDUP_LOGS": "0", "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    })
    if token_path is not None:
        env["RAY_AUTH_TOKEN_PATH"] = str(token_path)
    return env


class Procs:
    """Started processes and the temp dirs that identify their children."""

    def __init__(self, markers: list[str]):
        self.procs: list[subprocess.Popen] = []
        self.markers = markers

    def start(self, args: list[str], env: dict, log: Path) -> subprocess.Popen:
        out = open(log, "wb")
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=str(REPO))
        out.close()
        self.procs.append(proc)
        return proc

    def stop(self, timeout: float = 5.0) -> None:
        for proc in reversed(self.procs):
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.time() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs:
            _signal_group(proc.pid, signal.SIGKILL)
        kill_marked(self.markers)


def _signal_group(pgid: int, sig) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def marked_pids(markers: list[str]) -> list[int]:
    """Pids of our own processes whose command line or environment names one of `markers`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if any(m.encode() in blob for m in markers):
            found.append(int(entry.name))
    return found


def kill_marked(markers: list[str], wait: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = marked_pids(markers)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + wait
        while time.time() < deadline and marked_pids(markers):
            time.sleep(0.2)


def http_json(url: str, token: str | None = None, timeout: float = 5.0):
    """(status, parsed JSON or text) of a GET, with a bearer token when given."""
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read().decode()
            status = r.status
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def alive_nodes(dashboard: str, token: str | None = None) -> list[dict] | None:
    """Alive nodes from the state API (None while the dashboard does not answer)."""
    try:
        status, body = http_json(f"{dashboard}/api/v0/nodes?limit=100&detail=1", token)
    except OSError:
        return None
    if status != 200 or not isinstance(body, dict):
        return None
    nodes = body.get("data", {}).get("result", {}).get("result", [])
    return [n for n in nodes if n.get("state") == "ALIVE"]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5, logs: list[Path] = ()):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists())
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")
