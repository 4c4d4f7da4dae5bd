"""With `mesh serve --workers N`, one relay process writes the audit entries of every worker.

Every sharing read waits for its audit entry to be durable. When each worker appended to the
one chain itself, the workers took turns on the chain lock and each worker's writer thread held
that lock while competing for its process's GIL with the event loop and handler threads, so a
batch of a few entries held the lock for ~10 ms. The relay is a process of its own, doing
nothing else: workers send it their batches over a private Unix socket and wait for its answer,
and it group-commits what all workers sent. Still fail closed: an entry counts as written only
once the relay says it is committed; a worker that cannot reach the relay refuses the read (503).

The relay is one thread: it reads every frame that has arrived, commits them all in one
transaction, answers each, and reads again. A worker's event loop sends its frames itself
(`RelayClient`), one per turn of the loop, without waiting for the previous answer. Before, a
frame went through a worker's writer thread and, in the relay, a handler thread per worker
and a writer thread: on two busy cores each of those hand-offs waited to be scheduled (or for
the GIL), and a request spent ~17 of its ~24 ms waiting for its entry (32 clients, 2 workers).

Frames are a 4-byte big-endian length and msgspec JSON: a request is the batch's entries per
ticket (`list[list[AuditEntry]]`), the answer one `failed` flag per ticket. Decoding is typed,
so a frame can carry nothing but entries.
"""

import asyncio
import logging
import selectors
import socket
import struct
import threading
import weakref
from collections import deque
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy.engine import Engine

from catalog.audit.models import AuditEntry
from catalog.audit.writer import BatchWriter, GroupCommit, Ticket, check
from catalog.kernel.errors import Unavailable

log = logging.getLogger("mesh.audit")
_LENGTH = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024
Frames = list[tuple[socket.socket, list[list[AuditEntry]]]]  # (connection, groups) per frame
_decode_batch = msgspec.json.Decoder(list[list[AuditEntry]]).decode
_decode_flags = msgspec.json.Decoder(list[bool]).decode
_encode = msgspec.json.Encoder().encode


TIMEOUT_SECONDS = 30.0  # a relay that has not answered a frame by then counts as down


def frame(payload: bytes) -> bytes:
    """`payload` with its length in front."""
    return _LENGTH.pack(len(payload)) + payload


def send_frame(sock: socket.socket, payload: bytes) -> None:
    """One length-prefixed frame."""
    sock.sendall(frame(payload))


def receive_frame(sock: socket.socket) -> bytes | None:
    """The next frame, or None when the peer closed the connection between frames."""
    head = _receive_exactly(sock, _LENGTH.size)
    if head is None:
        return None
    (length,) = _LENGTH.unpack(head)
    if length > MAX_FRAME:
        raise ValueError(f"audit relay frame of {length} bytes is too large")
    body = _receive_exactly(sock, length)
    if body is None:
        raise ConnectionError("the audit relay connection closed in the middle of a frame")
    return body


def _receive_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            if left == size:
                return None
            raise ConnectionError("the audit relay connection closed in the middle of a frame")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def ask(sock: socket.socket, groups: list[list[AuditEntry]]) -> list[bool]:
    """Send one batch to the relay; one `failed` flag per group."""
    send_frame(sock, _encode(groups))
    answer = receive_frame(sock)
    if answer is None:
        raise ConnectionError("the audit relay closed the connection")
    return _flags(answer, len(groups))


def _flags(answer: bytes, groups: int) -> list[bool]:
    flags = _decode_flags(answer)
    if len(flags) != groups:
        raise ValueError("the audit relay answered for another number of entries")
    return flags


class RelayClient:
    """One event loop's pipelined connection to the relay (`RelaySink.write_async`).

    Entries handed in during one turn of the loop go out together as one frame; a frame does not
    wait for the answer to the one before, and the relay answers a connection's frames in order.
    Any failure (relay unreachable, connection closed, no answer within `TIMEOUT_SECONDS`, a
    garbled answer) fails every frame in flight, so their reads are refused (fail closed), and
    the next frame connects again.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._outgoing: list[tuple[list[AuditEntry], asyncio.Future[bool]]] = []
        self._in_flight: deque[list[asyncio.Future[bool]]] = deque()
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._sending = asyncio.Lock()  # frames leave in the order they were made
        self._tasks: set[asyncio.Task[None]] = set()  # referenced until done
        self._send_due = False

    async def write(self, entries: list[AuditEntry]) -> bool:
        """Send `entries` with whatever else this turn of the loop writes; True if it failed."""
        written: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._outgoing.append((entries, written))
        if not self._send_due:
            self._send_due = True
            self._start(self._send())
        return await written

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self) -> None:
        self._send_due = False
        async with self._sending:
            batch, self._outgoing = self._outgoing, []
            if not batch:
                return
            waiting = [written for _, written in batch]
            try:
                if self._stream is None:
                    self._stream = await asyncio.wait_for(
                        asyncio.open_unix_connection(str(self._path)), TIMEOUT_SECONDS
                    )
                    self._start(self._read_answers(*self._stream))
                writer = self._stream[1]
                writer.write(frame(_encode([entries for entries, _ in batch])))
                self._in_flight.append(waiting)
                await asyncio.wait_for(writer.drain(), TIMEOUT_SECONDS)
            except Exception as exc:  # whatever it was, every waiting read must get an answer
                self._fail(exc, waiting)

    async def _read_answers(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                deadline = TIMEOUT_SECONDS if self._in_flight else None  # idle: none
                head = await asyncio.wait_for(reader.readexactly(_LENGTH.size), deadline)
                (length,) = _LENGTH.unpack(head)
                if length > MAX_FRAME or not self._in_flight:
                    raise ValueError("the audit relay sent an answer too large or unasked for")
                body = await asyncio.wait_for(reader.readexactly(length), TIMEOUT_SECONDS)
                waiting = self._in_flight[0]
                flags = _flags(body, len(waiting))
                self._in_flight.popleft()
                for written, failed in zip(waiting, flags, strict=True):
                    if not written.done():  # its request may have been cancelled meanwhile
                        written.set_result(failed)
        except Exception as exc:  # a stale connection's reader leaves the new one alone
            if self._stream is not None and self._stream[1] is writer:
                self._fail(exc, [])

    def _fail(self, exc: BaseException, waiting: list[asyncio.Future[bool]]) -> None:
        """Refuse everything in flight (and `waiting`); the next frame connects again."""
        log.error("audit relay unavailable: %s", type(exc).__name__)
        if self._stream is not None:
            self._stream[1].close()
            self._stream = None
        for written in [*waiting, *(w for sent in self._in_flight for w in sent)]:
            if not written.done():
                written.set_result(True)
        self._in_flight.clear()


class RelaySink(BatchWriter):
    """A worker's sink when a relay writes for every worker: event loops send their entries
    themselves (`RelayClient`, one per loop); threads hand theirs to a batching thread that
    asks the relay over its own connection."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path
        self._socket: socket.socket | None = None  # used by the batching thread only
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RelayClient] = (
            weakref.WeakKeyDictionary()
        )

    async def write_async(self, entries: list[AuditEntry]) -> None:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = RelayClient(self._path)
        check(await client.write(entries))

    def _commit(self, tickets: list[Ticket]) -> tuple[list[Ticket], Exception | None]:
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._socket.settimeout(TIMEOUT_SECONDS)
                self._socket.connect(str(self._path))
            flags = ask(self._socket, [t.entries for t in tickets])
        except (OSError, ValueError) as exc:  # unreachable or broken: refuse, reconnect next time
            log.error("audit relay unavailable: %s", type(exc).__name__)
            if self._socket is not None:
                self._socket.close()
                self._socket = None
            return tickets, Unavailable("the audit relay is unavailable")
        return [t for t, failed in zip(tickets, flags, strict=True) if failed], None


class RelayServer:
    """The relay: accept workers on a Unix socket, group-commit what they send, answer each.

    One thread does it all; while it commits, new frames wait in the sockets and go into the
    next transaction. A connection that sends a frame too large or not made of entries is
    dropped (that worker reconnects and refuses the reads in flight).
    """

    def __init__(self, path: Path, engine: Engine) -> None:
        self._writer = GroupCommit(engine)
        path.unlink(missing_ok=True)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        path.chmod(0o600)  # only this user's processes may hand in entries
        self._listener.listen(64)
        self._listener.setblocking(False)
        self._wake, self._waker = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake, selectors.EVENT_READ)
        self._received: dict[socket.socket, bytearray] = {}
        self._stopping = threading.Event()

    def serve_forever(self) -> None:
        """Serve until `shutdown()`."""
        while not self._stopping.is_set():
            frames: Frames = []
            for key, _ in self._selector.select():
                if key.fileobj is self._listener:
                    self._accept()
                elif key.fileobj is not self._wake:
                    frames += self._frames_from(key.fileobj)  # type: ignore[arg-type]
            if frames:
                self._answer(frames)

    def shutdown(self) -> None:
        """Stop serving (from another thread) and close every socket."""
        self._stopping.set()
        self._waker.send(b"x")

    def close(self) -> None:
        """Close the listener and every connection."""
        for sock in [*self._received, self._listener, self._wake, self._waker]:
            sock.close()
        self._selector.close()

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        self._received[sock] = bytearray()
        self._selector.register(sock, selectors.EVENT_READ)

    def _frames_from(self, sock: socket.socket) -> Frames:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return []
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return []
        buffer = self._received[sock]
        buffer += data
        frames = []
        while len(buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer)
            if length > MAX_FRAME:
                log.error(
                    "audit relay: a frame of %d bytes is too large; connection dropped", length
                )
                self._drop(sock)
                return []
            if len(buffer) < _LENGTH.size + length:
                break
            body = bytes(buffer[_LENGTH.size : _LENGTH.size + length])
            del buffer[: _LENGTH.size + length]
            try:
                frames.append((sock, _decode_batch(body)))
            except msgspec.MsgspecError:
                log.error("audit relay: a frame that is not entries; connection dropped")
                self._drop(sock)
                return []
        return frames

    def _answer(self, frames: Frames) -> None:
        flags = self._writer.write_here([group for _, groups in frames for group in groups])
        start = 0
        for sock, groups in frames:
            answer, start = flags[start : start + len(groups)], start + len(groups)
            if sock not in self._received:
                continue
            data = frame(_encode(answer))
            try:
                sent = sock.send(data)  # a few bytes: they fit unless the worker stopped reading
            except OSError:
                sent = 0
            if sent < len(data):
                self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        if self._received.pop(sock, None) is not None:
            self._selector.unregister(sock)
        sock.close()


def run_relay(path: Path, engine: Engine) -> None:
    """Accept workers on the Unix socket at `path` and write what they send, until killed."""
    server = RelayServer(path, engine)
    log.info("audit relay listening on %s", path)
    try:
        server.serve_forever()
    finally:
        server.close()
