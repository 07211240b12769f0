"""Worker processes: the same ``Runner`` on every core, one merged result.

The parent starts ``n`` children (``python -m chaosaa.traffic.workers``), hands each its
``RunnerConfig`` (worker ``w`` of ``n``), waits until every child is ready, then gives all
of them the same start instant ``t0`` on the machine-wide monotonic clock. Children run
their share on uvloop and report counters a few times a second; at ``stop`` each sends its
sample log and write ledger as raw columns, and the parent concatenates them.

The pipes carry length-prefixed pickles between a process and the children it started
(nothing else writes to them: a child's own stdout goes to stderr). A child whose parent
disappears sees its stdin close and exits without draining.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import struct
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

from chaosaa.traffic.recording import SampleLog, WriteLedger
from chaosaa.traffic.runner import Runner, RunnerConfig, TrafficCounters

#: how often children report their counters (seconds)
REPORT_INTERVAL = 0.25
#: how long a child may take to import and get ready
READY_TIMEOUT = 30.0
#: margin between "every child is ready" and the common start instant
START_MARGIN = 0.02
_HEADER = struct.Struct("!I")
#: the directory that holds the ``chaosaa`` package, so children import this very copy
_ROOT = str(Path(__file__).resolve().parents[2])


# --------------------------------------------------------------------------- framing


def _frame(message: dict[str, Any]) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


async def _read(stream: asyncio.StreamReader) -> dict[str, Any]:
    (size,) = _HEADER.unpack(await stream.readexactly(_HEADER.size))
    message = pickle.loads(await stream.readexactly(size))
    if not isinstance(message, dict):
        raise TypeError("a worker frame must be a dict")
    return message


# --------------------------------------------------------------------------- parent


class WorkerError(RuntimeError):
    """A worker process failed to start, or died."""


class _Worker:
    def __init__(self, index: int, proc: asyncio.subprocess.Process) -> None:
        self.index = index
        self.proc = proc
        self.counters: dict[str, Any] = TrafficCounters().snapshot()
        self.finished = asyncio.Event()
        self.result: dict[str, Any] | None = None
        self.done = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None
        self.failure: str | None = None

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(ConnectionError, RuntimeError):
            self.proc.stdin.write(_frame(message))


class WorkerPool:
    """``len(configs)`` child processes, each running one ``Runner``."""

    def __init__(self, configs: list[RunnerConfig], counters: TrafficCounters) -> None:
        self._configs = configs
        self.counters = counters
        self._workers: list[_Worker] = []
        self.started_at: float | None = None
        self.log: SampleLog | None = None
        self.ledger: WriteLedger | None = None
        #: CPU seconds the workers used while sending (from the start instant to stop)
        self.cpu_seconds = 0.0

    async def start(self, span: float) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, env.get("PYTHONPATH")]))
        try:
            for i, config in enumerate(self._configs):
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "chaosaa.traffic.workers",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    env=env,
                    # Ctrl-C is for the parent, which stops the workers and keeps their
                    # samples; a worker interrupted by it would take them along
                    start_new_session=True,
                )
                worker = _Worker(i, proc)
                self._workers.append(worker)
                worker.send({"op": "config", "config": config})
            async with asyncio.timeout(READY_TIMEOUT):
                for worker in self._workers:
                    assert worker.proc.stdout is not None
                    ready = await _read(worker.proc.stdout)
                    if ready.get("op") != "ready":
                        raise WorkerError(f"traffic worker {worker.index}: {ready}")
        except (TimeoutError, asyncio.IncompleteReadError, OSError) as exc:
            await self._kill()
            raise WorkerError(f"traffic workers did not start: {exc!r}") from exc
        t0 = time.monotonic() + START_MARGIN
        self.started_at = t0 + self._configs[0].wall_offset
        for worker in self._workers:
            worker.send({"op": "start", "t0": t0, "span": span})
            worker.reader = asyncio.create_task(self._listen(worker))

    async def _listen(self, worker: _Worker) -> None:
        stdout = worker.proc.stdout
        assert stdout is not None
        try:
            while True:
                message = await _read(stdout)
                op = message.get("op")
                if op == "counters":
                    worker.counters = message["counters"]
                    self.counters.set_sum([w.counters for w in self._workers])
                elif op == "finished":
                    worker.finished.set()
                elif op == "result":
                    worker.counters = message["counters"]
                    worker.result = message
                    self.counters.set_sum([w.counters for w in self._workers])
                    return
        except (asyncio.IncompleteReadError, OSError, pickle.UnpicklingError) as exc:
            worker.failure = f"traffic worker {worker.index} died: {exc!r}"
        finally:
            worker.finished.set()
            worker.done.set()

    async def finished(self) -> None:
        await asyncio.gather(*(w.finished.wait() for w in self._workers))

    async def stop(self, drain_timeout: float) -> None:
        for worker in self._workers:
            worker.send({"op": "stop", "drain": drain_timeout})
        try:
            async with asyncio.timeout(max(0.0, drain_timeout) + 10.0):
                await asyncio.gather(*(w.done.wait() for w in self._workers))
        except TimeoutError:
            pass
        await self._kill()
        self._merge()

    def _merge(self) -> None:
        config = self._configs[0]
        log: SampleLog | None = None
        ledger: WriteLedger | None = None
        lost = 0
        for worker in self._workers:
            if worker.result is None:
                lost += int(worker.counters["in_flight"])
                continue
            self.cpu_seconds += float(worker.result.get("cpu", 0.0))
            part = SampleLog.load(worker.result["log"])
            acks = WriteLedger.load(config.run_id, worker.result["ledger"])
            if log is None or ledger is None:
                log, ledger = part, acks
            else:
                log.extend(part)
                ledger.extend(acks)
        self.log, self.ledger = log, ledger
        self.counters.set_sum([w.counters for w in self._workers])
        if lost:  # a worker that died takes its requests in flight with it
            self.counters.cancelled += lost
            self.counters.in_flight -= lost

    def failures(self) -> list[str]:
        return [w.failure for w in self._workers if w.failure]

    async def _kill(self) -> None:
        for worker in self._workers:
            if worker.proc.stdin is not None:
                with contextlib.suppress(OSError, RuntimeError):
                    worker.proc.stdin.close()
        for worker in self._workers:
            try:
                async with asyncio.timeout(5.0):
                    await worker.proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.kill()
                await worker.proc.wait()
            if worker.reader is not None and not worker.reader.done():
                worker.reader.cancel()
                await asyncio.gather(worker.reader, return_exceptions=True)


# --------------------------------------------------------------------------- child


def _read_exactly(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            raise EOFError("the parent closed the pipe")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_blocking(fd: int) -> dict[str, Any]:
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
    message = pickle.loads(_read_exactly(fd, size))
    if not isinstance(message, dict):
        raise TypeError("a worker frame must be a dict")
    return message


async def _serve(config: RunnerConfig, out: BinaryIO) -> None:
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(commands), os.fdopen(0, "rb", buffering=0)
    )
    runner = Runner(config)

    def send(message: dict[str, Any]) -> None:
        out.write(_frame(message))
        out.flush()

    send({"op": "ready"})
    try:
        start = await _read(commands)
    except asyncio.IncompleteReadError:
        return  # the parent went away before the start
    runner.begin(start["t0"], start["span"])

    async def report() -> None:
        await runner.finished()
        send({"op": "finished"})

    async def tick() -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL)
            send({"op": "counters", "counters": runner.counters.snapshot()})

    tasks = [asyncio.create_task(report()), asyncio.create_task(tick())]
    try:
        stop = await _read(commands)
        drain = float(stop.get("drain", 0.0))
    except asyncio.IncompleteReadError:
        drain = 0.0  # the parent went away: do not linger
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await runner.stop(drain)
    send(
        {
            "op": "result",
            "counters": runner.counters.snapshot(),
            "log": runner.log.export(),
            "ledger": runner.ledger.export(),
            "cpu": runner.cpu_seconds,
        }
    )


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    # Frames go to the original stdout; anything printed goes to stderr instead.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    config = _read_blocking(0)["config"]
    if not isinstance(config, RunnerConfig):
        raise TypeError("the first frame must carry a RunnerConfig")
    try:
        import uvloop

        uvloop.run(_serve(config, out))
    except ImportError:  # pragma: no cover - uvloop is a dependency; kept for odd platforms
        asyncio.run(_serve(config, out))
    except (BrokenPipeError, ConnectionError):
        pass  # the parent went away


if __name__ == "__main__":
    main()
