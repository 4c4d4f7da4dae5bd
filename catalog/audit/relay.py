"""With `mesh serve --workers N`, one relay process writes the audit entries of every worker.

Every sharing read waits for its audit entry to be durable. When each worker appended to the
one chain itself, the workers took turns on the chain lock and each worker's writer thread held
that lock while competing for its process's GIL with the event loop and handler threads, so a
batch of a few entries held the lock for ~10 ms. The relay is a process of its own, doing
nothing else: workers send it their batches over a private Unix socket and wait for its answer,
and it group-commits what all workers sent. Still fail closed: an entry counts as written only
once the relay says it is committed; a worker that cannot reach the relay refuses the read (503).

Frames are a 4-byte big-endian length and msgspec JSON: a request is the batch's entries per
ticket (`list[list[AuditEntry]]`), the answer one `failed` flag per ticket. Decoding is typed,
so a frame can carry nothing but entries.
"""

import logging
import socket
import socketserver
import struct
from pathlib import Path

import msgspec
from sqlalchemy.engine import Engine

from catalog.audit.models import AuditEntry

log = logging.getLogger("mesh.audit")
_LENGTH = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024
_decode_batch = msgspec.json.Decoder(list[list[AuditEntry]]).decode
_decode_flags = msgspec.json.Decoder(list[bool]).decode
_encode = msgspec.json.Encoder().encode


def send_frame(sock: socket.socket, payload: bytes) -> None:
    """One length-prefixed frame."""
    sock.sendall(_LENGTH.pack(len(payload)) + payload)


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
    flags = _decode_flags(answer)
    if len(flags) != len(groups):
        raise ValueError("the audit relay answered for another number of entries")
    return flags


def relay_server(path: Path, engine: Engine) -> socketserver.ThreadingUnixStreamServer:
    """The relay's server on the Unix socket at `path` (not serving yet)."""
    from catalog.audit.writer import AuditWriter  # the writer imports this module

    writer = AuditWriter(engine)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            while (frame := receive_frame(sock)) is not None:
                send_frame(sock, _encode(writer.write_groups(_decode_batch(frame))))

    path.unlink(missing_ok=True)
    server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
    server.daemon_threads = True
    path.chmod(0o600)  # only this user's processes may hand in entries
    return server


def serve(path: Path, engine: Engine) -> None:
    """Accept workers on the Unix socket at `path` and write what they send, until killed."""
    with relay_server(path, engine) as server:
        log.info("audit relay listening on %s", path)
        server.serve_forever()
