"""Real gunicorn servers for the tests (the shipped ``gunicorn.conf.py``), and streams read from
them in the background.

Each server's output is kept in a file so a test can read the log while the server runs; a
cluster's teardown kills whatever is left.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from .helpers import HX, parse_sse, wait_until

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-servers-shared-secret-key-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One gunicorn master (and its workers) in its own process group, logging to a file."""

    def __init__(
        self,
        name: str,
        tmp_path: Path,
        database_url: str,
        fake_url: str,
        env: dict[str, str],
        port: int | None = None,
    ):
        self.name = name
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"gunicorn-{name}.log"
        full_env = dict(
            os.environ,
            CHATBOT_INSTANCE_PATH=str(tmp_path / "instance"),
            DATABASE_URL=database_url,
            SECRET_KEY=SECRET,
            OPENAI_API_KEY="sk-test-not-a-real-key",
            OPENAI_BASE_URL=fake_url,
            CHATBOT_OPENAI_MAX_RETRIES="0",
            CHATBOT_CSRF_ENABLED="false",  # these tests post like scripts; CSRF has its own tests
            GUNICORN_BIND=f"127.0.0.1:{self.port}",
            GUNICORN_ACCESS_LOG="/dev/null",
        )
        full_env.update(env)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - open as long as the server runs
        self.proc = subprocess.Popen(
            # no control socket: two servers at once would share gunicorn's default path
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--no-control-socket", "wsgi:app"],
            cwd=ROOT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # its own process group: teardown kills the workers too

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def up(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"gunicorn {self.name} did not start:\n{self.output()}")
        try:
            return requests.get(self.url + "/", timeout=1).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # a worker still booting
            return False

    def kill(self) -> None:
        """Kill the whole group at once (master and workers, even one stuck in a stream): a
        graceful stop adds ~3 s per test and proves nothing here."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        finally:
            self._log.close()


class Cluster:
    """The servers (on one database, with ``env`` for all of them) and the browsers of one test;
    ``close`` ends them all."""

    def __init__(self, tmp_path: Path, database_url: str, fake_url: str, env: dict[str, str] | None = None):
        self.tmp_path, self.database_url, self.fake_url = tmp_path, database_url, fake_url
        self.env = env or {}
        self.servers: list[Server] = []
        self.sessions: list[requests.Session] = []

    def start(self, n: int = 1, *, port: int | None = None, **env: str) -> list[Server]:
        """n gunicorn servers on this test's database, started together; returns once all serve.
        ``port``: (one server) at this port, as a server restarted at its old address."""
        batch = [
            Server(
                str(len(self.servers) + i),
                self.tmp_path,
                self.database_url,
                self.fake_url,
                {**self.env, **env},
                port=port,
            )
            for i in range(n)
        ]
        self.servers.extend(batch)
        for server in batch:
            wait_until(server.up, timeout=60, interval=0.1, what=f"gunicorn {server.name} to start")
        return batch

    def browser(self) -> requests.Session:
        session = requests.Session()
        self.sessions.append(session)
        return session

    def tab(self, browser: requests.Session) -> requests.Session:
        """Another tab of the same browser: its own connections, the same session cookie."""
        tab = self.browser()
        tab.cookies.update(browser.cookies)
        return tab

    def close(self) -> None:
        for session in self.sessions:  # idle keep-alive connections would hold a worker's exit
            session.close()
        for server in self.servers:
            server.kill()


def on_this_stack(tmp_path: Path, fake_url: str, **env: str) -> Cluster:
    """A cluster on this run's stack: a new SQLite file, or (the postgres run) this test's
    PostgreSQL database with sessions and rate-limit counts in Redis."""
    from .conftest import REDIS_TEST_URL, _stack

    if not _stack:
        return Cluster(tmp_path, f"sqlite:///{tmp_path / 'servers.sqlite3'}", fake_url, env)
    redis = {
        "REDIS_URL": REDIS_TEST_URL,
        "CHATBOT_SESSION_KEY_PREFIX": _stack["prefix"] + ":session:",
        "CHATBOT_RATELIMIT_KEY_PREFIX": _stack["prefix"],
    }
    return Cluster(tmp_path, _stack["database"], fake_url, {**redis, **env})


def assert_no_traceback(*servers: Server) -> None:
    for server in servers:
        out = server.output()
        assert "Traceback" not in out, out


# --- browsers and streams ----------------------------------------------------------------------


class Stream:
    """A post read as a stream in a background thread: its events with their arrival times."""

    def __init__(self, session: requests.Session, url: str, data: dict[str, str]):
        self.events: list[tuple[float, dict]] = []
        self.status: int | None = None
        self.error: BaseException | None = None
        self.started = time.perf_counter()
        self.ended: float | None = None
        self._thread = threading.Thread(target=self._read, args=(session, url, data), daemon=True)
        self._thread.start()

    def _read(self, session: requests.Session, url: str, data: dict[str, str]) -> None:
        try:
            with session.post(url, data=data, headers=HX, stream=True, timeout=30) as response:
                self.status = response.status_code
                block: list[str] = []
                for raw in response.iter_lines(decode_unicode=True):
                    if raw == "":
                        for event in parse_sse("\n".join(block)):
                            self.events.append((time.perf_counter(), event))
                        block = []
                    else:
                        block.append(raw)
                if block:
                    for event in parse_sse("\n".join(block)):
                        self.events.append((time.perf_counter(), event))
        except BaseException as exc:  # reported by join()
            self.error = exc
        finally:
            self.ended = time.perf_counter()

    def join(self, timeout: float) -> Stream:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the stream did not end within {timeout} s"
        assert self.error is None, repr(self.error)
        return self

    def data(self) -> list[str]:
        return [e["data"] for _, e in self.events if e["event"] is None]

    def final(self) -> str:
        return self.data()[-1]

    def reply_id(self) -> int:
        match = re.search(r'data-role="assistant" data-message-id="(\d+)"', self.data()[0])
        assert match, self.data()[0]
        return int(match.group(1))

    def conversation(self) -> str:
        for _, event in self.events:
            if event["event"] == "chatbot:navigate":
                return event["data"].rsplit("/", 1)[1]
        raise AssertionError("no chatbot:navigate event in the stream")

    def text_events(self, reply_id: int) -> int:
        marker = f'hx-target="#msg-{reply_id}-tail"'
        return sum(marker in d for d in self.data())


def first_events(stream: Stream, n: int = 1, timeout: float = 5) -> Stream:
    wait_until(
        lambda: len(stream.events) >= n or stream.ended, timeout=timeout, what=f"{n} events of the stream"
    )
    assert stream.status == 200, (stream.status, stream.events)
    return stream


def post(session: requests.Session, url: str, content: str = "", retry: int | None = None):
    data = {"content": content}
    if retry is not None:
        data["retry"] = str(retry)
    return session.post(url, data=data, headers=HX, timeout=30)


class RoundRobin:
    """One address in front of several servers, as a load balancer: each new connection goes to
    the next server in turn (no stickiness), bytes relayed both ways until either side closes."""

    def __init__(self, *ports: int):
        self.targets = list(ports)
        self._open: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sent_to: list[int] = []  # the port each connection went to
        self._next = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            port = self.targets[self._next % len(self.targets)]
            self._next += 1
            self.sent_to.append(port)
            try:
                upstream = socket.create_connection(("127.0.0.1", port))
            except OSError:
                client.close()
                continue
            self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Break every connection open now, as a network failure would (new ones still work)."""
        for s in self._open:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._open.clear()

    def close(self) -> None:
        self.listener.close()
        self.cut()
