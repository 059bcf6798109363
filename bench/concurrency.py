"""How the shipped server holds up under many chats at once, and under slow clients.

Starts the app as shipped (``gunicorn -c gunicorn.conf.py wsgi:app``: gevent workers, as many as
the config says; a temporary instance folder and SQLite file) and the fake OpenAI-compatible
model in its own process, paced like a real model: 300 ms to the first token, then 60 tokens
30 ms apart (about 2 s a reply).

Rate limits are switched off in the server's environment (CHATBOT_RATELIMIT_ENABLED=false):
every simulated client comes from 127.0.0.1, so the per-address limits would refuse most of them
and the figures would measure the limiter, not the server. The model's SDK retries are off too
(CHATBOT_OPENAI_MAX_RETRIES=0), so a failed model call shows as a failure, not as a slow reply.

For each number of clients N, all at once (a barrier):

- model alone: N clients ask the fake model directly (POST /v1/chat/completions, stream=true);
  this is the floor, and shows whether the client side (this process) or the fake keeps up;
- the app: N clients, each its own browser: GET / (the page's CSRF token), then, all at the same
  moment, POST /c as htmx does, reading the event stream. Timed from the POST: the first event
  (their message shown on the page), the first text event, the end of the stream, and whether the
  last event says data-status="complete". One second in, it prints how many connections each
  gunicorn worker holds; after the table, the CPU each process used (the fake is one Python process:
  at hundreds of streams it, not this client, is what slows "model alone").

Then the slow clients (``--slow``): that many connections that send a request's header lines one
every 2 s (a slowloris), while a few normal GET / are timed (capped at 30 s).

    python bench/concurrency.py [--clients 8,32,128,500] [--slow 40] [--deadline 120]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent

TTFT = 0.3  # the fake model's time to the first token (s)
TOKEN_DELAY = 0.03  # between tokens (s)
TOKENS = 60
_WORDS = (
    "Restart the phone, then open Settings > Battery and see which apps use the most power. "
    "Turn off background refresh for them, lower the screen brightness, and update the system "
    "software. If the battery still drains within a few hours, book a check at an authorised "
    "service centre: the battery may need replacing."
).split()
REPLY = " ".join(_WORDS[i % len(_WORDS)] for i in range(TOKENS))  # one token a word: TOKENS tokens

# The fake model, in its own process so it doesn't share this process's GIL, and under gevent: a
# thread per stream took a whole core at 500 streams, on the machine the app is measured on (the
# real model runs elsewhere). Its listen backlog is
# raised from socketserver's 5: N clients connecting at once would otherwise wait on SYN retries.
# It serves until its stdin closes (the bench closes it, or exits).
FAKE_LAUNCHER = """
from gevent import monkey; monkey.patch_all()
import http.server, select, sys
http.server.ThreadingHTTPServer.request_queue_size = 1024
from tests.fake_openai import FakeOpenAI, Reply
server = FakeOpenAI()
server.default = Reply(sys.argv[1], first_token_delay=float(sys.argv[2]), token_delay=float(sys.argv[3]))
print(server.url, flush=True)
select.select([sys.stdin], [], [])  # (cooperative: the server's greenlets run meanwhile)
server.close()
"""

SLOW_INTERVAL = 2.0  # a slow client sends one header line this often (s)
PROBE_CAP = 30.0  # a normal GET / while the slow clients hold on is given this long (s)
PROBES = 5  # normal GET / timed at once while the slow clients hold on
BARRIER_SECONDS = 120.0  # the longest the clients wait for each other's page loads
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- a small HTTP/1.1 client: one socket a request, cheap per line --------------------------------


class HttpError(Exception):
    pass


@dataclass
class Response:
    sock: socket.socket
    file: object  # the socket's buffered reader
    status: int
    headers: dict[str, str]  # names in lower case (the last of repeated ones)
    cookies: list[str]  # name=value of each Set-Cookie

    def close(self) -> None:
        try:
            self.file.close()
        finally:
            self.sock.close()


def send_request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    timeout: float = 30.0,
) -> Response:
    """Connect, send one request (Connection: close) and read the status line and headers."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        file = sock.makefile("rb")
        status_line = file.readline()
        if not status_line:
            raise HttpError("closed before the status line")
        status = int(status_line.split()[1])
        found: dict[str, str] = {}
        cookies = []
        for _ in range(200):
            line = file.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            found[name.strip().lower()] = value.strip()
            if name.strip().lower() == "set-cookie":
                cookies.append(value.strip().split(";", 1)[0])
        return Response(sock, file, status, found, cookies)
    except BaseException:
        sock.close()
        raise


def body_lines(response: Response):
    """The body's lines (without their newline), chunked or not; HttpError if cut short."""
    file = response.file
    if response.headers.get("transfer-encoding", "").lower() == "chunked":
        rest = b""
        while True:
            size_line = file.readline()
            if not size_line:
                raise HttpError("stream cut short (no end chunk)")
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                break
            data = file.read(size)
            if len(data) < size:
                raise HttpError("stream cut short (inside a chunk)")
            file.readline()  # the chunk's CRLF
            *complete, rest = (rest + data).split(b"\n")
            yield from complete
        if rest:
            yield rest
    elif "content-length" in response.headers:
        yield from file.read(int(response.headers["content-length"])).split(b"\n")
    else:
        yield from file.read().split(b"\n")


def csrf_token(page: str) -> str:
    """The page's CSRF token (every POST carries it, as the page's own requests do)."""
    return page.split('name="csrf-token" id="csrf-token" content="', 1)[1].split('"', 1)[0]


# --- the clients --------------------------------------------------------------------------------


@dataclass
class Result:
    shown: float | None = None  # s from the request to the first event (the message on the page)
    first_text: float | None = None  # s from the request to the first text
    total: float | None = None  # s from the request to the end of the stream
    complete: bool = False
    failure: str | None = None  # a short reason, when not complete


def failure_text(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"[:80]


def app_client(port: int, barrier: threading.Barrier, deadline: float, result: Result, done) -> None:
    """One browser: load the page, wait for the others, post a first message, read the stream."""
    token = cookie = None
    try:
        page = send_request(port, "GET", "/", timeout=BARRIER_SECONDS)
        try:
            text = b"\n".join(body_lines(page)).decode()
            if page.status != 200:
                raise HttpError(f"GET / answered {page.status}")
            token = csrf_token(text)
            cookie = "; ".join(page.cookies)
        finally:
            page.close()
    except (OSError, ValueError, IndexError, HttpError) as exc:
        result.failure = "page: " + failure_text(exc)
    try:
        barrier.wait(BARRIER_SECONDS)
    except threading.BrokenBarrierError:
        result.failure = result.failure or "the clients never all got going"
        token = None
    try:
        if token is None:
            return
        start = time.perf_counter()
        headers = {
            "HX-Request": "true",
            "X-CSRF-Token": token,
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "text/event-stream",
        }
        if cookie:
            headers["Cookie"] = cookie
        body = urlencode({"content": "My battery drains fast. What can I do?"}).encode()
        stop_by = start + deadline
        response = send_request(port, "POST", "/c", headers, body, timeout=deadline)
        try:
            if response.status != 200:
                raw = b" ".join(body_lines(response)).decode(errors="replace")
                reason = re.sub(r"<[^>]+>|\s+", " ", raw).strip()[:60]
                result.failure = f"HTTP {response.status}" + (f" ({reason})" if reason else "")
                return
            response.sock.settimeout(max(1.0, min(30.0, stop_by - time.perf_counter())))
            event: list[bytes] = []
            last_event: list[bytes] = []
            for line in body_lines(response):
                now = time.perf_counter()
                if result.shown is None and line.startswith(b"data:"):
                    result.shown = now - start
                if (
                    result.first_text is None
                    and line.startswith(b'data: <hx-partial hx-target="#msg-')
                    and b'-tail"' in line
                ):
                    result.first_text = now - start
                if line.startswith(b"data:"):
                    event.append(line)
                elif not line and event:
                    last_event, event = event, []
                if now > stop_by:
                    raise HttpError(f"still streaming after {deadline:.0f} s")
            result.total = time.perf_counter() - start
            final = b"\n".join(event or last_event).decode(errors="replace")
            statuses = re.findall(r'data-status="([a-z_-]+)"', final)
            result.complete = bool(statuses) and statuses[-1] == "complete"
            if not result.complete:
                last = f'data-status="{statuses[-1]}"' if statuses else "without a reply"
                result.failure = "ended " + last
        finally:
            response.close()
    except (OSError, ValueError, HttpError) as exc:
        result.failure = failure_text(exc)
    finally:
        done.append(1)


def model_client(port: int, barrier: threading.Barrier, deadline: float, result: Result, done) -> None:
    """Ask the fake model directly, as the app does, and read its stream."""
    body = json.dumps(
        {
            "model": "fake",
            "messages": [{"role": "user", "content": "My battery drains fast. What can I do?"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    try:
        barrier.wait(BARRIER_SECONDS)
    except threading.BrokenBarrierError:
        result.failure = "the clients never all got going"
        done.append(1)
        return
    try:
        start = time.perf_counter()
        stop_by = start + deadline
        response = send_request(
            port, "POST", "/v1/chat/completions", {"Content-Type": "application/json"}, body, deadline
        )
        try:
            if response.status != 200:
                result.failure = f"HTTP {response.status}"
                return
            response.sock.settimeout(max(1.0, min(30.0, stop_by - time.perf_counter())))
            for line in body_lines(response):
                now = time.perf_counter()
                if (
                    result.first_text is None
                    and line.startswith(b"data: {")
                    and b'"content": "' in line
                    and b'"content": ""' not in line
                ):
                    result.first_text = now - start
                if line == b"data: [DONE]":
                    result.complete = True
                if now > stop_by:
                    raise HttpError(f"still streaming after {deadline:.0f} s")
            result.total = time.perf_counter() - start
            if not result.complete:
                result.failure = "ended without [DONE]"
        finally:
            response.close()
    except (OSError, ValueError, HttpError) as exc:
        result.failure = failure_text(exc)
    finally:
        done.append(1)


# --- processes: memory and CPU from /proc -----------------------------------------------------------


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


class RssPeak(threading.Thread):
    """Samples the server's RSS (gunicorn master + workers) five times a second; keeps the peak."""

    def __init__(self, master: int):
        super().__init__(daemon=True)
        self.master = master
        self.peak = 0
        self.stopped = threading.Event()

    def current(self) -> int:
        return sum(rss_kb(pid) for pid in [self.master, *children(self.master)])

    def reset(self) -> None:
        self.peak = self.current()

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            self.peak = max(self.peak, self.current())


# --- one round ----------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@dataclass
class Round:
    results: list[Result]
    wall: float
    cpu: dict[str, float]  # share of one core, by process group

    @property
    def complete(self) -> int:
        return sum(r.complete for r in self.results)

    def shown(self, q: float) -> float | None:
        return pct([r.shown for r in self.results if r.shown is not None], q)

    def first(self, q: float) -> float | None:
        return pct([r.first_text for r in self.results if r.first_text is not None], q)

    def whole(self, q: float) -> float | None:
        return pct([r.total for r in self.results if r.complete and r.total is not None], q)

    def failures(self) -> Counter:
        return Counter(r.failure for r in self.results if not r.complete)


def run_round(label: str, n: int, client, port: int, deadline: float, groups: dict, snapshot=None) -> Round:
    """N clients at once; ``snapshot()``, if given, is printed once, 1 s after they start."""
    results = [Result() for _ in range(n)]
    done: list[int] = []
    barrier = threading.Barrier(n + 1)
    threads = [
        threading.Thread(target=client, args=(port, barrier, deadline, r, done), daemon=True) for r in results
    ]
    for thread in threads:
        thread.start()
    try:
        barrier.wait(BARRIER_SECONDS)
    except threading.BrokenBarrierError:
        print(f"    {label}: the clients never all got going", flush=True)
    cpu_before = {name: cpu_seconds(pids()) for name, pids in groups.items()}
    client_before = time.process_time()
    start = time.perf_counter()
    stop_by = start + deadline + 15
    next_note = start + 5
    while len(done) < n and time.perf_counter() < stop_by:
        time.sleep(0.1)
        if snapshot is not None and time.perf_counter() - start >= 1.0:
            print(f"    {label}, 1 s in, connections held by {snapshot()}", flush=True)
            snapshot = None
        if time.perf_counter() >= next_note:
            next_note += 5
            print(f"    {label}: {len(done)}/{n} done after {time.perf_counter() - start:.0f} s", flush=True)
    wall = time.perf_counter() - start
    cpu = {name: (cpu_seconds(pids()) - cpu_before[name]) / wall for name, pids in groups.items()}
    cpu["client"] = (time.process_time() - client_before) / wall
    for thread in threads:
        thread.join(max(0.0, stop_by - time.perf_counter()) + 1)
    for r in results:
        if len(done) < n and r.total is None and r.failure is None:
            r.failure = "client still running at the deadline"
    return Round(results, wall, cpu)


# --- the slow clients ---------------------------------------------------------------------------


def timed_get(port: int, cap: float) -> tuple[float, str]:
    """Seconds a plain GET / takes (status and body), and what came of it."""
    start = time.perf_counter()
    try:
        response = send_request(port, "GET", "/", timeout=cap)
        try:
            response.sock.settimeout(max(0.1, cap - (time.perf_counter() - start)))
            for _ in body_lines(response):
                pass
            return time.perf_counter() - start, f"HTTP {response.status}"
        finally:
            response.close()
    except (OSError, ValueError, HttpError) as exc:
        return time.perf_counter() - start, failure_text(exc)


def held_by_worker(master: int, port: int, client_ports: set[int] | None = None) -> dict[int | str, int]:
    """How many client connections (all, or from these ports) each gunicorn worker holds, and how
    many wait in the listen queue, not yet accepted (from /proc/net/tcp and the workers' fds)."""
    inodes: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if (
            state == "01"  # established
            and int(local.split(":")[1], 16) == port
            and (client_ports is None or int(remote.split(":")[1], 16) in client_ports)
        ):
            inodes.add(f"socket:[{inode}]")
    held: dict[int | str, int] = {}
    for pid in children(master):
        try:
            links = [os.readlink(entry) for entry in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        held[pid] = sum(link in inodes for link in links)
    held["not accepted yet"] = len(inodes) - sum(held.values())
    return held


def describe_held(held: dict[int | str, int]) -> str:
    return ", ".join(
        f"worker {key}: {count}" if isinstance(key, int) else f"{key}: {count}" for key, count in held.items()
    )


def ms_or_s(seconds: float, outcome: str) -> str:
    if not outcome.startswith("HTTP"):
        return f"> {seconds:.1f} s ({outcome})"
    return f"{seconds * 1000:.0f} ms ({outcome})" if seconds < 1 else f"{seconds:.2f} s ({outcome})"


def slow_clients(port: int, n: int, master: int) -> None:
    before, outcome = timed_get(port, PROBE_CAP)
    print(f"  a normal GET / before: {before * 1000:.0f} ms ({outcome})", flush=True)
    socks: list[socket.socket] = []
    refused = Counter()
    for _ in range(n):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: slowloris\r\n".encode())
            socks.append(sock)
        except OSError as exc:
            refused[failure_text(exc)] += 1
    print(
        f"  {len(socks)} slow clients connected ({dict(refused) or 'none refused'}); each sends a "
        f"header line every {SLOW_INTERVAL:.0f} s",
        flush=True,
    )
    stop = threading.Event()
    dropped: list[int] = []

    def drip() -> None:
        line = 0
        limit = time.monotonic() + PROBE_CAP + 3 * SLOW_INTERVAL + 5  # bounded, whatever happens
        while not stop.wait(SLOW_INTERVAL) and time.monotonic() < limit:
            line += 1
            for sock in socks:
                if sock.fileno() == -1:
                    continue
                try:
                    sock.sendall(f"X-Slow-{line}: {line}\r\n".encode())
                except OSError:
                    sock.close()
                    dropped.append(1)

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    time.sleep(1.0)  # let the server take them in
    held = held_by_worker(master, port, {sock.getsockname()[1] for sock in socks})
    print(
        "  the slow connections sit in: "
        + describe_held(held)
        + " (gthread: each worker's threads, GUNICORN_THREADS, default 16; gevent: greenlets)",
        flush=True,
    )
    probes: list[tuple[float, str]] = []
    probe_threads = [
        threading.Thread(target=lambda: probes.append(timed_get(port, PROBE_CAP)), daemon=True)
        for _ in range(PROBES)
    ]
    for thread in probe_threads:
        thread.start()
    for thread in probe_threads:
        thread.join(PROBE_CAP + 5)
    hung_up = time.perf_counter()
    stop.set()
    dripper.join(SLOW_INTERVAL + 1)
    for sock in socks:
        sock.close()
    answered = sorted(t for t, outcome in probes if outcome.startswith("HTTP"))
    print(
        f"  a normal GET / meanwhile ({PROBES} at once, cap {PROBE_CAP:.0f} s): "
        + ", ".join(ms_or_s(t, outcome) for t, outcome in sorted(probes)),
        flush=True,
    )
    print(
        f"    {len(answered)} of {PROBES} answered; slow connections the server dropped "
        f"while they lasted: {len(dropped)}",
        flush=True,
    )
    after, outcome = timed_get(port, PROBE_CAP)
    print(
        f"  a normal GET / once they hung up: {after * 1000:.0f} ms ({outcome}; "
        f"{time.perf_counter() - hung_up:.1f} s after)",
        flush=True,
    )


# --- main ---------------------------------------------------------------------------------------


def stop_process(process: subprocess.Popen, seconds: float) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: it and its workers
        process.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default="8,32,128,500", help="numbers of clients, comma-separated")
    parser.add_argument("--slow", type=int, default=40, help="slow clients (0: skip)")
    parser.add_argument(
        "--deadline", type=float, default=120.0, help="a client gives up on its reply after this (s)"
    )
    parser.add_argument(
        "--database",
        default="",
        help="a database URL for the server, an empty database (default: a new SQLite file)",
    )
    parser.add_argument("--log", default="", help="keep the server's log in this file")
    parser.add_argument(
        "--app", default="wsgi:app", help="the WSGI app gunicorn serves (bench.bare_stream:app: the floor)"
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.clients.split(",") if n.strip()]
    began = time.perf_counter()

    tmp = tempfile.mkdtemp(prefix="chatbot-concurrency-")
    fake = subprocess.Popen(
        [sys.executable, "-c", FAKE_LAUNCHER, REPLY, str(TTFT), str(TOKEN_DELAY)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    server = None
    log_path = Path(tmp) / "gunicorn.log"
    try:
        fake_url = fake.stdout.readline().strip()
        if not fake_url.startswith("http://127.0.0.1:"):
            sys.exit("the fake model did not start")
        fake_port = int(fake_url.rsplit(":", 1)[1].split("/", 1)[0])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = dict(
            os.environ,
            CHATBOT_INSTANCE_PATH=tmp,
            DATABASE_URL=args.database or f"sqlite:///{tmp}/bench.sqlite3",
            OPENAI_API_KEY="sk-bench",
            OPENAI_BASE_URL=fake_url,
            CHATBOT_PROVIDER="openai",
            CHATBOT_OPENAI_MAX_RETRIES="0",
            CHATBOT_RATELIMIT_ENABLED="false",  # all clients are 127.0.0.1: see the docstring
            GUNICORN_BIND=f"127.0.0.1:{port}",
        )
        for key in ("WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_ACCESS_LOG"):
            env.pop(key, None)  # as shipped
        with open(log_path, "wb") as log:
            command = ["gunicorn", "-c", "gunicorn.conf.py", "--no-control-socket", args.app]
            server = subprocess.Popen(
                [sys.executable, "-m", *command],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        for _ in range(300):
            if server.poll() is not None:
                sys.exit("gunicorn exited:\n" + log_path.read_text()[-3000:])
            if timed_get(port, 1.0)[1] == "HTTP 200":
                break
            time.sleep(0.1)
        else:
            sys.exit("gunicorn did not answer within 30 s")
        workers, steady_since = children(server.pid), time.monotonic()
        for _ in range(150):  # the other workers boot a moment after the first answers
            time.sleep(0.1)
            if len(now := children(server.pid)) != len(workers):
                workers, steady_since = now, time.monotonic()
            elif time.monotonic() - steady_since > 2.0:
                break
        where = f"database {args.database.split('@')[-1]}" if args.database else f"SQLite in {tmp}"
        rss = RssPeak(server.pid)
        rss.start()
        print(
            f"gunicorn -c gunicorn.conf.py (as shipped, {len(workers)} workers, worker class "
            f"{os.environ.get('GUNICORN_WORKER_CLASS', 'gevent')}) on 127.0.0.1:{port}, {where}; "
            f"idle RSS "
            f"{rss.current() / 1024:.0f} MB",
            flush=True,
        )
        print(
            f"fake model in its own process: {TTFT * 1000:.0f} ms to the first token, {TOKENS} tokens "
            f"{TOKEN_DELAY * 1000:.0f} ms apart ({TTFT + TOKEN_DELAY * (TOKENS - 1):.2f} s a reply)",
            flush=True,
        )
        print(
            "rate limits OFF (CHATBOT_RATELIMIT_ENABLED=false: every client is 127.0.0.1); "
            "SDK retries off (CHATBOT_OPENAI_MAX_RETRIES=0)",
            flush=True,
        )
        groups = {
            "server": lambda: [server.pid, *children(server.pid)],
            "fake": lambda: [fake.pid],
        }
        # A fresh worker's first requests pay one-time costs (the SDK's modules, compiling
        # templates and statements): a round that is not counted, so they don't land in the first row.
        run_round("warm-up", 16, app_client, port, args.deadline, groups)
        rows = []
        for n in counts:
            print(f"{n} clients: the model alone ...", flush=True)
            alone = run_round("model alone", n, model_client, fake_port, args.deadline, groups)
            time.sleep(0.5)
            print(f"{n} clients: the app ...", flush=True)
            rss.reset()
            ours = run_round(
                "app",
                n,
                app_client,
                port,
                args.deadline,
                groups,
                snapshot=lambda: describe_held(held_by_worker(server.pid, port)),
            )
            rows.append((n, ours, alone, rss.peak))
            print(
                f"  done in {ours.wall:.1f} s: {ours.complete}/{n} complete, whole reply p95 "
                f"{secs(ours.whole(0.95))} s (model alone {secs(alone.whole(0.95))} s)",
                flush=True,
            )
            time.sleep(1.0)  # the last saves and ticks settle

        print()
        print(
            "clients | replies complete | message shown p95 | first text p50 / p95 | whole reply p95"
            " | failures | server RSS"
            " | model alone: first text p95 / whole reply p95"
        )
        for n, ours, alone, peak in rows:
            print(
                f"{n:7} | {ours.complete:>7}/{n:<8} | {secs(ours.shown(0.95)):>17} | "
                f"{secs(ours.first(0.5)):>7} / {secs(ours.first(0.95)):<7}"
                f"  | {secs(ours.whole(0.95)):>13}   | {n - ours.complete:8} | {peak / 1024:7.0f} MB"
                f" | {secs(alone.first(0.95)):>12} / {secs(alone.whole(0.95))}"
            )
        print(
            "(seconds, timed from each client's POST; whole reply over complete replies; RSS: gunicorn"
            " master + workers, peak of 5 samples a second)"
        )
        print()
        print(f"CPU while each round ran (share of one core; the machine has {os.cpu_count()} cores):")
        print(
            "clients | app: server / fake / this client | server CPU per reply"
            " | model alone: fake / this client"
        )
        for n, ours, alone, _ in rows:
            print(
                f"{n:7} | {ours.cpu['server']:10.0%} / {ours.cpu['fake']:4.0%} / {ours.cpu['client']:4.0%}"
                f"      | {ours.cpu['server'] * ours.wall / n * 1000:15.1f} ms"
                f"  | {alone.cpu['fake']:18.0%} / {alone.cpu['client']:4.0%}"
            )
        for n, ours, alone, _ in rows:
            for label, round_ in (("app", ours), ("model alone", alone)):
                for reason, count in round_.failures().most_common():
                    print(f"  {n} clients, {label}: {count} x {reason}")

        if args.slow:
            print()
            print(f"{args.slow} slow clients (slowloris):", flush=True)
            slow_clients(port, args.slow, server.pid)

        problems = [
            line
            for line in log_path.read_text(errors="replace").splitlines()
            if re.search(r"\b(ERROR|CRITICAL|WARNING|Traceback)\b|WORKER TIMEOUT", line)
        ]
        print()
        print(f"server log: {len(problems)} warning/error lines")
        for line in list(dict.fromkeys(problems))[:10]:
            print("  " + line[:200])
        rss.stopped.set()
        print(f"total {time.perf_counter() - began:.0f} s")
    finally:
        if server is not None:
            stop_process(server, 35)
            if args.log:
                shutil.copyfile(log_path, args.log)
        if fake.stdin:
            fake.stdin.close()
        stop_process(fake, 5)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
