"""Model calls that can be cancelled from another thread at any stage.

Closing an SDK response ends a call whose body is streaming, but not one still connecting or
waiting for the response headers: that thread sits in ``recv()`` until the model answers or the
timeout fires (20 s seen). So the HTTP client the SDK uses is given a network backend that knows
which call each thread is making: ``Call.cancel()`` (from any thread) marks the call and shuts
its socket down, which wakes the blocked ``recv()`` at once; the next read or write of that call
then raises ``CallCancelled`` — not an ``httpx`` error, so the SDK does not retry it.

The same backend paces a streaming reply's reads (``Call.pace``): once the reply's text flows, the
socket is read at most every ``pace`` seconds, and each read takes every chunk that arrived
meanwhile. A model streams a token every 10-30 ms; the page is sent text in batches anyway
(``STREAM_FLUSH_SECONDS``), so reading each token as it lands only costs a wake-up per token
(measured: the reading was a third of the server's CPU with hundreds of replies at once).

Relies on httpcore's network-backend interface (public) and on httpx's transport keeping its pool
as ``_pool`` (private; the version range in ``pyproject.toml`` is bounded for it).
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore2
import httpx2
import openai


class CallCancelled(openai.OpenAIError):
    """The call was cancelled; deriving from ``OpenAIError`` makes the SDK re-raise it as is."""


class Call:
    """One model call, made by one thread; ``cancel()`` may come from any thread."""

    def __init__(self) -> None:
        self.cancelled = False
        self.finished = False
        self.pace = 0.0  # read at most this often (seconds); 0: read as data arrives
        self._last_read = float("-inf")
        self._streams: list[httpcore2.NetworkStream] = []
        self._lock = threading.Lock()
        self._woken = threading.Event()

    def cancel(self) -> None:
        with self._lock:
            if self.finished:
                return
            self.cancelled = True
            streams = list(self._streams)
        self._woken.set()
        for stream in streams:
            _shutdown(stream)

    def finish(self) -> None:
        """The call is over: its connection may be back in the pool, serving another call, so a
        late ``cancel()`` must leave it alone."""
        with self._lock:
            self.finished = True
            self._streams.clear()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (the SDK's pause before a retry), or less if the call is cancelled."""
        self._woken.wait(seconds)
        self.check()

    def before_read(self) -> None:
        """Wait out the pace since the last read (a cancel ends the wait at once)."""
        if self.pace:
            wait = self._last_read + self.pace - time.monotonic()
            if wait > 0:
                self.sleep(wait)

    def after_read(self) -> None:
        self._last_read = time.monotonic()

    def check(self) -> None:
        if self.cancelled:
            raise CallCancelled("the model call was cancelled")

    def using(self, stream: httpcore2.NetworkStream) -> None:
        with self._lock:
            if stream not in self._streams:
                self._streams.append(stream)
            cancelled = self.cancelled
        if cancelled:
            _shutdown(stream)
            self.check()


def _more_waiting(sock: Any) -> bool:
    """Bytes to read right now, decrypted already (TLS) or in the socket's buffer."""
    if sock is None:
        return False
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    try:  # (poll: select() refuses file numbers from 1024, which a busy worker reaches)
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):  # closed meanwhile
        return False


def _shutdown(stream: httpcore2.NetworkStream) -> None:
    sock = stream.get_extra_info("socket")
    if sock is None:
        return
    try:  # the plain socket's shutdown, even under TLS: it wakes a recv() in another thread
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


_calls: dict[int, Call] = {}  # thread id -> the call that thread is making


@contextmanager
def tracked(call: Call) -> Iterator[Call]:
    """Make ``call`` the current thread's call while the block runs."""
    me = threading.get_ident()
    _calls[me] = call
    try:
        yield call
    finally:
        _calls.pop(me, None)
        call.finish()


def _current() -> Call | None:
    return _calls.get(threading.get_ident())


class _Stream(httpcore2.NetworkStream):
    def __init__(self, inner: httpcore2.NetworkStream):
        self.inner = inner

    def _enter(self) -> Call | None:
        call = _current()
        if call is not None:
            call.using(self.inner)
        return call

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        call = self._enter()
        if call is not None:
            call.before_read()
        try:
            data = self.inner.read(max_bytes, timeout)
        except Exception:
            self._check_cancelled()
            raise
        if call is not None:
            call.after_read()
            if call.pace and data:  # a paced read takes everything that has arrived meanwhile
                data = self._drain(data, max_bytes, timeout)
        if not data:
            self._check_cancelled()
        return data

    def _drain(self, data: bytes, max_bytes: int, timeout: float | None) -> bytes:
        """More reads while more is already here: over TLS one read returns one record (one
        chunk of the reply), however many have arrived."""
        sock = self.inner.get_extra_info("socket")
        while len(data) < max_bytes and _more_waiting(sock):
            try:
                more = self.inner.read(max_bytes - len(data), timeout)
            except Exception:  # noqa: BLE001 - the next read raises it again, after this data
                break
            if not more:
                break
            data += more
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._enter()
        try:
            self.inner.write(buffer, timeout)
        except Exception:
            self._check_cancelled()
            raise

    def _check_cancelled(self) -> None:
        call = _current()
        if call is not None:
            call.check()

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.NetworkStream:
        self._enter()
        try:
            return _Stream(self.inner.start_tls(ssl_context, server_hostname, timeout))
        except Exception:
            self._check_cancelled()
            raise

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class _Backend(httpcore2.NetworkBackend):
    def __init__(self, inner: httpcore2.NetworkBackend):
        self.inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        call = _current()
        if call is not None:
            call.check()
        stream = _Stream(self.inner.connect_tcp(host, port, timeout, local_address, socket_options))
        stream._enter()
        return stream

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.NetworkStream:
        return _Stream(self.inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class OpenAI(openai.OpenAI):
    """The SDK's client; its pause before a retry (up to a server's Retry-After) ends the moment
    the call is cancelled, instead of holding the thread for the whole wait."""

    def _sleep_for_retry(
        self, *, retries_taken: int, max_retries: int, options: Any, response: httpx2.Response | None
    ) -> None:
        call = _current()
        if call is None:
            super()._sleep_for_retry(
                retries_taken=retries_taken, max_retries=max_retries, options=options, response=response
            )
            return
        headers = response.headers if response is not None else None
        call.sleep(self._calculate_retry_timeout(max_retries - retries_taken, options, headers))


# Connections to the model kept open for the next call, per process: as many as replies stream at
# once (the SDK keeps 100), so a busy process doesn't connect (and shake TLS hands) for every reply.
LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=1000)


def http_client() -> httpx2.Client:
    """The SDK's default HTTP client, with a network backend whose calls can be cancelled."""
    client = openai.DefaultHttpxClient(limits=LIMITS)
    pool = client._transport._pool  # type: ignore[attr-defined]
    pool._network_backend = _Backend(pool._network_backend)
    return client
