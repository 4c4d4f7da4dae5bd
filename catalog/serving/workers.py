"""`mesh serve --workers N`: N uvicorn processes, each on its own SO_REUSEPORT socket.

Uvicorn's own multi-process mode shares one listening socket, and whichever worker wakes first
accepts every pending connection: 32 clients connecting together landed 31 on one worker and
1 on the other. With a socket per worker the kernel spreads connections across them instead.
The parent only supervises: it restarts a worker (or the audit relay, `catalog.audit.relay`)
that dies and stops them all on SIGINT/SIGTERM. Each worker builds its app from the `MESH_*`
environment (`catalog.app:from_environment`), which names the relay's socket.

Stopping is bounded (`MESH_SHUTDOWN_DRAIN_SECONDS`, default 10): requests in flight get the drain
time to finish, then uvicorn cancels them; a process whose handler threads are still stuck (a
thread blocked in the database cannot be cancelled) exits EXIT_GRACE_SECONDS later on its own
(`BoundedServer`), and the supervisor kills whatever outlives that.
"""

import logging
import logging.config
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

log = logging.getLogger("mesh.workers")
APP = "catalog.app:from_environment"
EXIT_GRACE_SECONDS = 5.0  # after the drain: cancelled tasks end, the executor is shut down


class BoundedServer(uvicorn.Server):
    """A uvicorn server that exits within `drain + EXIT_GRACE_SECONDS` of the first signal.

    uvicorn waits `timeout_graceful_shutdown` for requests, cancels their tasks, and then
    `asyncio.run` waits for the default executor's threads, however long a thread stays blocked.
    A timer armed by the first SIGINT/SIGTERM ends the process when that wait overruns.
    """

    def __init__(self, config: uvicorn.Config, *, drain_seconds: float) -> None:
        config.timeout_graceful_shutdown = max(1, int(drain_seconds))
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self._deadline: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._deadline is None:
            self._deadline = threading.Timer(self.drain_seconds + EXIT_GRACE_SECONDS, _exit_now)
            self._deadline.daemon = True
            self._deadline.start()
        super().handle_exit(sig, frame)


def _exit_now() -> None:
    log.error("requests still stuck after the shutdown drain time; exiting without them")
    logging.shutdown()
    os._exit(1)


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other processes may bind to the same address too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _worker(host: str, port: int, log_config: dict[str, Any], drain: float) -> None:
    config = uvicorn.Config(
        APP,
        factory=True,
        log_level="info",
        log_config=log_config,
        access_log=False,  # RequestContextMiddleware logs each request, without query strings
    )
    BoundedServer(config, drain_seconds=drain).run(sockets=[listening_socket(host, port)])


def _join_or_kill(processes: list[BaseProcess], seconds: float) -> None:
    """Wait up to `seconds` in all for `processes` to exit; SIGKILL those that do not."""
    deadline = time.monotonic() + seconds
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            log.error("process %s outlived the shutdown drain; killing it", process.pid)
            process.kill()
            process.join(timeout=EXIT_GRACE_SECONDS)


def _relay(path: Path, log_config: dict[str, Any]) -> None:
    from catalog.audit import relay
    from catalog.kernel.db import engine_for
    from catalog.kernel.settings import Settings

    logging.config.dictConfig(log_config)
    relay.run_relay(path, engine_for(Settings()))


def serve_workers(
    host: str,
    port: int,
    workers: int,
    *,
    log_config: dict[str, Any],
    drain: float = 10.0,
    audit_relay: bool = True,
) -> None:
    """Run `workers` server processes on host:port, and their audit relay, until signalled.

    Once signalled, returns within about `drain + 2 * EXIT_GRACE_SECONDS` whatever the workers'
    requests are doing. Without `audit_relay` each worker group-commits its own entries to the
    database (bench/README.md measures both).
    """
    if not audit_relay:
        os.environ.pop("MESH_AUDIT_RELAY", None)
        _serve(host, port, workers, log_config=log_config, drain=drain, relay_path=None)
        return
    private = Path(tempfile.mkdtemp(prefix="mesh-audit-"))  # mode 0700: this user only
    try:
        relay_path = private / "relay.sock"
        os.environ["MESH_AUDIT_RELAY"] = str(relay_path)  # the workers' settings read it
        _serve(host, port, workers, log_config=log_config, drain=drain, relay_path=relay_path)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _serve(
    host: str,
    port: int,
    workers: int,
    *,
    log_config: dict[str, Any],
    drain: float,
    relay_path: Path | None,
) -> None:
    context = multiprocessing.get_context("spawn")
    # Bound here first, so a taken port fails at once, in the parent, with a clear error.
    listening_socket(host, port).close()
    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def start() -> BaseProcess:
        process = context.Process(
            target=_worker, args=(host, port, log_config, drain), daemon=False
        )
        process.start()
        return process

    def start_relay() -> BaseProcess | None:
        if relay_path is None:
            return None
        process = context.Process(target=_relay, args=(relay_path, log_config), daemon=False)
        process.start()
        return process

    relay = start_relay()
    for _ in range(600):  # the workers' first reads need the relay: up to a minute to start
        if relay is None or relay_path is None or relay_path.exists() or not relay.is_alive():
            break
        stopping.wait(0.1)
    processes = [start() for _ in range(workers)]
    try:
        while not stopping.wait(0.5):
            if relay is not None and not relay.is_alive():  # meanwhile reads are refused (503)
                log.error("audit relay exited with %s; starting another", relay.exitcode)
                relay = start_relay()
            for i, process in enumerate(processes):
                if not process.is_alive():
                    log.error(
                        "worker %s exited with %s; starting another", process.pid, process.exitcode
                    )
                    processes[i] = start()
    finally:
        for process in processes:
            process.terminate()  # SIGTERM: uvicorn finishes the requests in flight, boundedly
        _join_or_kill(processes, drain + 2 * EXIT_GRACE_SECONDS)
        if relay is not None:
            relay.terminate()  # after the workers: their last entries are written
            _join_or_kill([relay], EXIT_GRACE_SECONDS)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
