"""Where PII analysis runs: analyzer processes (the default), or a thread of guard's process.

Presidio's analysis is pure-Python CPU work. Run in a thread of guard's own process it
shares the GIL with the event loop, so it never runs in parallel with the loop and every
hand-over between the threads costs CPU: measured with ``bench/relay_micro.py`` on 1 KB
PII-free results, guard spent 2.8 ms of CPU per call with two analyzer threads, 2.5 ms with
one, and 1.7 ms doing the same work on the loop itself. (``concurrent.futures``' process
pool has the same problem in guard's process: two helper threads per pool.) The default
therefore runs the analysis in ``workers`` separate processes (:class:`ProcessAnalysis`,
``python -m guard.pii.worker``), each with its own :class:`~guard.pii.engine.Analyzer`
built from an :class:`AnalyzerSpec`, talking to the event loop over pipes without any
helper thread: the loop keeps its core, the analysis uses the others, and guard's process
does not even import Presidio. Only :data:`~guard.pii.analysis.Item` lists go to a worker
and :class:`~guard.pii.analysis.Detection` lists come back; walking the payload, rules,
tokens, keys and rewriting stay in guard's process, so key material never leaves it.

Workers start when the stage starts, and guard does not serve before they answer. A
message goes to the worker predicted to be free first, or, when it is large and
several workers are idle, is split over them (:meth:`ProcessAnalysis._parts`). A worker that dies (killed, out of
memory) fails the messages it had closed (``pii_error``) and is replaced at once; one that
has been working on a message whose deadline passed for ``stall_grace`` seconds is killed
and replaced (a pathological input must not hold a worker forever; messages merely queued
behind others do not count against it).

``workers = 0`` selects :class:`ThreadAnalysis` (one thread in guard's process): less
memory, no parallelism; tests use it with stand-in analyzers.

Admission is by deadline, not by count (:class:`ServiceTime`): a message is refused
(``pii_overloaded``) only when it cannot be analysed before its deadline given the backlog
ahead of it, estimated as the measured service time per unit of cost times the cost queued
on the least busy worker (plus its own). Otherwise it queues, however many messages wait: a
burst of small messages is absorbed, and the queue is bounded by what the workers can finish
within one timeout. ``max_pending`` (``0``: none, the default) is an optional hard cap on
messages queued or running. A message whose analysis overruns its deadline anyway fails
closed (``pii_timeout``); its work keeps counting against the backlog until it finishes, so a
flood of slow messages cannot queue unbounded work.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import pickle
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard.errors import PIIError
from guard.pii.analysis import Detection, Item, TextAnalyzer
from guard.pii.rules import PIIRules, RecognizerSpec
from guard.pii.scan.cache import DEFAULT_CAPACITY, VerdictCache
from guard.pii.worker import HEADER, frame, frame_size

if TYPE_CHECKING:
    from guard.pii.engine import Analyzer

log = logging.getLogger("guard.pii")

ITEM_COST = 64
"""Estimated analysis cost of one string beyond its length, in characters (see ``_parts``)."""

INITIAL_SECONDS_PER_COST = 2e-6
"""Service time per unit of cost assumed before anything was measured (conservative: about
twice what a 4 KB result with 30 PII values took before the compiled scanner)."""

START_TIMEOUT = 120.0
"""Seconds allowed for the first worker to import Presidio and build its analyzer."""


class PIIUnavailable(Exception):
    """Analysis could not complete; ``reason`` is a stable code (``pii_timeout``, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AnalyzerSpec:
    """How to build the analyzer (picklable: a worker process builds its own)."""

    entities: tuple[str, ...] | None
    """Entity types the rules detect (:meth:`~guard.pii.rules.PIIRules.detected_entities`;
    ``None``: every supported type)."""
    custom: tuple[RecognizerSpec, ...] = ()
    """Recognizers from the rules file."""
    nlp_model: str = ""
    """An installed spaCy pipeline adding NER, or ``""`` (blank tokenizer)."""
    context: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Context words per entity type replacing the recognizers' own (``[entities.X] context``)."""
    cache_size: int = DEFAULT_CAPACITY
    """Verdict-cache entries per analyzer (:mod:`guard.pii.scan.cache`; ``0``: no cache)."""

    @classmethod
    def for_rules(cls, rules: PIIRules, nlp_model: str = "", cache_size: int = DEFAULT_CAPACITY) -> AnalyzerSpec:
        """The analyzer a rules file needs: the entity types it names and its recognizers."""
        entities = rules.detected_entities()
        return cls(entities=None if entities is None else tuple(sorted(entities)),
                   custom=tuple(rules.recognizers), nlp_model=nlp_model,
                   context=tuple(sorted(rules.context.items())), cache_size=cache_size)

    def build(self) -> Analyzer:
        from guard.pii.engine import Analyzer, load_spacy_pipeline

        pipeline = load_spacy_pipeline(self.nlp_model) if self.nlp_model else None
        return Analyzer(entities=self.entities, custom=self.custom, pipeline=pipeline, ner=pipeline is not None,
                        context=dict(self.context))


WORKER_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH", "PYTHONHASHSEED",
                      "VIRTUAL_ENV", "SYSTEMROOT")
"""The only variables an analyzer process inherits: it needs none of guard's secrets."""


def worker_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for an analyzer process.

    The worker reads strings and returns spans; it never needs guard's key rings (``keyring_env``),
    upstream credentials or tokens, so none of guard's environment is passed beyond
    :data:`WORKER_ENVIRONMENT` (and ``guard`` itself on ``PYTHONPATH``).
    """
    source = os.environ if environ is None else environ
    env = {k: source[k] for k in WORKER_ENVIRONMENT if k in source}
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    return env


# -- in guard's process --------------------------------------------------------------------


def message_cost(items: list[Item]) -> int:
    """Estimated analysis cost of ``items``: characters plus :data:`ITEM_COST` per string."""
    return sum(len(text) for text, _ in items) + ITEM_COST * len(items)


class ServiceTime:
    """Measured analysis time per unit of cost, to predict when a backlog will be done.

    The ratio of the summed service times to the summed costs of the last :attr:`window`
    analyses (before the first one: :data:`INITIAL_SECONDS_PER_COST`): the rate at which an
    analyzer drains a backlog of mixed messages. A sum ratio, not a mean of per-message ratios,
    so that a tiny message delayed by a scheduler hiccup moves the estimate by its share of the
    work, not by its own (huge) seconds-per-character.

    A service time is the wall time the analyzer itself spent on a message (an analyzer
    process reports it with each answer; the thread measures its own call): it includes CPU
    contention on a busy host, which slows the analyzer and so the backlog. It does not
    include the time an answer waits for guard's event loop to read it: that delay is paid
    once per loop turn by every answer read in that turn, not once per queued message, so
    multiplying it by the queue length (as an estimate from turnarounds seen by the loop did)
    overstates the backlog many times over exactly when the loop is busiest, in a burst, and
    refuses messages that would have been analysed in time. A message whose answer comes late
    anyway still fails closed at its deadline (``pii_timeout``).
    """

    def __init__(self, initial: float = INITIAL_SECONDS_PER_COST, window: int = 64) -> None:
        self.per_cost = initial
        self.window = window
        self.samples = 0
        self._recent: collections.deque[tuple[float, int]] = collections.deque(maxlen=window)
        self._seconds = 0.0
        self._cost = 0

    def record(self, seconds: float, cost: int) -> None:
        if cost <= 0 or seconds < 0:
            return
        if len(self._recent) == self.window:
            old_seconds, old_cost = self._recent[0]
            self._seconds -= old_seconds
            self._cost -= old_cost
        self._recent.append((seconds, cost))
        self._seconds += seconds
        self._cost += cost
        self.samples += 1
        self.per_cost = max(self._seconds, 0.0) / self._cost

    def seconds(self, cost: float) -> float:
        return cost * self.per_cost


class _Bounded:
    """Admission by deadline (and the optional hard cap) shared by both kinds of analysis."""

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self._pending = 0
        self.service = ServiceTime()
        self.refused = 0
        """Messages refused at admission (``pii_overloaded``) so far."""

    @property
    def pending(self) -> int:
        """Analyses queued or running (including ones whose caller gave up)."""
        return self._pending

    def _admit(self, wait: float, cost: int, deadline: float) -> None:
        """Raise ``pii_overloaded`` when the message cannot be done before ``deadline``.

        ``wait`` is the predicted time until the chosen analyzer is free.
        """
        if self.max_pending and self._pending >= self.max_pending:
            self.refused += 1
            raise PIIUnavailable("pii_overloaded")
        if time.monotonic() + wait + self.service.seconds(cost) > deadline:
            self.refused += 1
            raise PIIUnavailable("pii_overloaded")

    def _release(self, future: asyncio.Future[Any]) -> None:
        # The slot is freed when the analysis is done, not when its caller gave up.
        self._pending -= 1
        if not future.cancelled():
            future.exception()  # retrieved: the caller reported it


class ThreadAnalysis(_Bounded):
    """Analysis in one thread of guard's process (``workers = 0``)."""

    def __init__(self, analyzer: TextAnalyzer, *, max_pending: int = 0, cache_size: int = 0) -> None:
        super().__init__(max_pending)
        self.analyzer = analyzer
        self.cache = VerdictCache(cache_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-pii")
        self._queued_cost = 0
        self._running_since = 0.0

    async def start(self) -> None:
        return None

    def ready(self) -> tuple[bool, str]:
        return True, "in-process analyzer"

    async def analyze(self, items: list[Item], deadline: float) -> list[list[Detection]]:
        cost = message_cost(items)
        busy = time.monotonic() - self._running_since if self._pending else 0.0
        self._admit(max(self.service.seconds(self._queued_cost) - busy, 0.0), cost, deadline)
        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, self._analyze, items)
        except RuntimeError as exc:  # the executor is shut down
            raise PIIUnavailable("pii_error") from exc
        if not self._pending:
            self._running_since = time.monotonic()
        self._pending += 1
        self._queued_cost += cost

        def done(future: asyncio.Future[Any], cost: int = cost) -> None:
            if not future.cancelled() and future.exception() is None:
                self.service.record(future.result()[1], cost)
            self._queued_cost -= cost
            self._running_since = time.monotonic()
            self._release(future)

        future.add_done_callback(done)
        try:
            detections, _ = await asyncio.wait_for(asyncio.shield(future), max(deadline - time.monotonic(), 0.0))
        except TimeoutError as exc:
            raise PIIUnavailable("pii_timeout") from exc
        except Exception as exc:
            log.error("PII analysis failed: %s", type(exc).__name__)
            raise PIIUnavailable("pii_error") from exc
        return detections

    def _analyze(self, items: list[Item]) -> tuple[list[list[Detection]], float]:
        """The detections and the seconds the analysis took (its service time)."""
        started = time.perf_counter()
        detections = self.cache.analyze(self.analyzer, items)
        return detections, time.perf_counter() - started

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class _Worker:
    """One analyzer process and the requests it has not answered yet (answered in order)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.outstanding: dict[int, tuple[asyncio.Future[list[list[Detection]]], int]] = {}
        """Future and cost per request, in the order sent, which is the order the worker
        answers: the first one is running."""
        self.queued_cost = 0
        """Sum of the costs of the outstanding requests."""
        self.running_since = 0.0
        """When the worker started on the first outstanding request (monotonic)."""
        self.requests = 0
        """Requests sent so far."""
        self.reader: asyncio.Task[None] | None = None

    def send(self, request_id: int, items: list[Item], cost: int,
             future: asyncio.Future[list[list[Detection]]]) -> None:
        self.requests += 1
        if not self.outstanding:
            self.running_since = time.monotonic()
        self.outstanding[request_id] = (future, cost)
        self.queued_cost += cost
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(frame((request_id, items)))

    def answered(self, request_id: int) -> tuple[asyncio.Future[list[list[Detection]]], int] | None:
        """The request's future and cost (``None`` if it was already failed)."""
        entry = self.outstanding.pop(request_id, None)
        self.running_since = time.monotonic()  # the next one, if any, runs from now at the latest
        if entry is None:
            return None
        self.queued_cost -= entry[1]
        return entry

    def wait(self, service: ServiceTime, now: float) -> float:
        """Predicted seconds until this worker has finished everything sent to it."""
        if not self.outstanding:
            return 0.0
        return max(service.seconds(self.queued_cost) - (now - self.running_since), 0.0)

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()


class ProcessAnalysis(_Bounded):
    """Analysis in ``workers`` processes (see the module docstring)."""

    def __init__(self, spec: AnalyzerSpec, *, workers: int = 2, max_pending: int = 0,
                 start_timeout: float = START_TIMEOUT, stall_grace: float = 5.0, split_cost: int = 1024) -> None:
        super().__init__(max_pending)
        self.spec = spec
        self.workers = workers
        self.split_cost = split_cost
        self.start_timeout = start_timeout
        self.stall_grace = stall_grace
        self.restarts = 0
        self._live: list[_Worker] = []
        self._ids = itertools.count(1)
        self._available = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    async def start(self) -> None:
        """Start every worker; return when all have built their analyzer (PIIError if one cannot)."""
        if self._live or self._closed:
            return
        results = await asyncio.gather(*(self._spawn() for _ in range(self.workers)), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        for worker in (r for r in results if isinstance(r, _Worker)):
            self._adopt(worker)
        if failures:
            await self.aclose()
            raise PIIError(f"PII analyzer process failed to start: {failures[0]}") from failures[0]
        log.info("PII analysis in %d worker process(es): %s", len(self._live), ", ".join(map(str, self.pids())))

    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests and operators)."""
        return [w.pid for w in self._live]

    def ready(self) -> tuple[bool, str]:
        if self._live:
            return True, f"{len(self._live)} of {self.workers} analyzer process(es)"
        return False, "no analyzer process running"

    async def analyze(self, items: list[Item], deadline: float) -> list[list[Detection]]:
        if not self._live:
            if self._closed:
                raise PIIUnavailable("pii_error")
            try:  # a replacement is starting: wait for it within the message's deadline
                await asyncio.wait_for(self._available.wait(), max(deadline - time.monotonic(), 0.0))
            except TimeoutError as exc:
                raise PIIUnavailable("pii_timeout") from exc
        costs = [len(text) + ITEM_COST for text, _ in items]
        parts = self._parts(items, costs)
        now = time.monotonic()
        for worker, _, cost in parts:
            self._admit(worker.wait(self.service, now), cost, deadline)
        loop = asyncio.get_running_loop()
        sent: list[tuple[_Worker, int, asyncio.Future[list[list[Detection]]]]] = []
        for worker, part, cost in parts:
            request_id = next(self._ids)
            future: asyncio.Future[list[list[Detection]]] = loop.create_future()
            self._pending += 1
            future.add_done_callback(self._release)
            worker.send(request_id, part, cost, future)
            sent.append((worker, request_id, future))
        detections: list[list[Detection]] = []
        try:
            for _, _, future in sent:
                detections += await asyncio.wait_for(asyncio.shield(future), max(deadline - time.monotonic(), 0.0))
        except TimeoutError as exc:
            for worker, request_id, future in sent:
                if not future.done():
                    loop.call_later(self.stall_grace, self._check_stalled, worker, request_id)
            raise PIIUnavailable("pii_timeout") from exc
        return detections

    def _parts(self, items: list[Item], costs: list[int]) -> list[tuple[_Worker, list[Item], int]]:
        """Where the items go: the worker that will be free first, or split over idle workers.

        A message whose estimated cost reaches ``split_cost`` is split into contiguous parts of
        similar cost when two or more workers are idle, so one large tool result is analyzed in
        parallel (its latency, not the total work, goes down). Under load no worker is idle
        and nothing is split. The cost of a string is its length plus :data:`ITEM_COST` (each
        string costs the recognizers a fixed overhead).
        """
        idle = [w for w in self._live if not w.outstanding]
        total = sum(costs)
        if len(idle) < 2 or len(items) < 2 or total < self.split_cost:
            now = time.monotonic()
            return [(min(self._live, key=lambda w: w.wait(self.service, now)), items, total)]
        count = min(len(idle), len(items))
        share = total / count
        parts: list[tuple[list[Item], int]] = [([], 0)]
        for item, cost in zip(items, costs, strict=True):
            if parts[-1][1] >= share and len(parts) < count:
                parts.append(([], 0))
            part, size = parts[-1]
            part.append(item)
            parts[-1] = (part, size + cost)
        return [(worker, part, size) for worker, (part, size) in zip(idle, parts, strict=False)]

    async def aclose(self) -> None:
        """Stop the workers (they exit when their input closes; killed if they do not)."""
        self._closed = True
        self._available.clear()
        for task in list(self._tasks):
            task.cancel()
        workers, self._live = self._live, []
        for worker in workers:
            if worker.process.stdin is not None:
                worker.process.stdin.close()
        for worker in workers:
            try:
                await asyncio.wait_for(worker.process.wait(), 2.0)
            except TimeoutError:
                worker.kill()
                await worker.process.wait()
            if worker.reader is not None:
                worker.reader.cancel()
            self._fail(worker)

    # -- workers -------------------------------------------------------------------------

    async def _spawn(self) -> _Worker:
        env = worker_environment()
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "guard.pii.worker", level, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, env=env, start_new_session=True)
        worker = _Worker(process)
        try:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(frame(self.spec))
            reply = await asyncio.wait_for(_read_frame(process.stdout), self.start_timeout)
            if not (isinstance(reply, tuple) and reply[:1] == ("ready",)):
                raise PIIError(f"analyzer process {process.pid} exited during start-up (see the log)")
        except BaseException:
            worker.kill()
            await process.wait()
            raise
        return worker

    def _adopt(self, worker: _Worker) -> None:
        self._live.append(worker)
        worker.reader = self._task(self._read(worker))
        self._available.set()

    async def _read(self, worker: _Worker) -> None:
        stdout = worker.process.stdout
        assert stdout is not None
        while True:
            try:
                reply = await _read_frame(stdout)
            except (OSError, ValueError, pickle.UnpicklingError):
                reply = None
            if reply is None:
                break
            request_id, detections, error, seconds = reply
            entry = worker.answered(request_id)
            if entry is None:
                continue
            future, cost = entry
            self.service.record(seconds, cost)
            if future.done():
                continue
            if error is not None:
                log.error("PII analysis failed: %s", error)
                future.set_exception(PIIUnavailable("pii_error"))
            else:
                future.set_result(detections)
        await worker.process.wait()
        self._lost(worker)

    def _lost(self, worker: _Worker) -> None:
        if worker in self._live:
            self._live.remove(worker)
        if not self._live:
            self._available.clear()
        self._fail(worker)
        if self._closed:
            return
        log.error("PII analyzer process %d exited (code %s); its messages failed closed; starting a new one",
                  worker.pid, worker.process.returncode)
        self.restarts += 1
        self._task(self._replace())

    def _fail(self, worker: _Worker) -> None:
        for future, _ in worker.outstanding.values():
            if not future.done():
                future.set_exception(PIIUnavailable("pii_error"))
        worker.outstanding.clear()
        worker.queued_cost = 0

    async def _replace(self) -> None:
        delay = 0.5
        while not self._closed:
            try:
                self._adopt(await self._spawn())
                return
            except Exception as exc:
                log.error("PII analyzer process failed to start (%s); retrying in %g s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _check_stalled(self, worker: _Worker, request_id: int) -> None:
        """After a timeout: kill the worker if it has been on this request for ``stall_grace``.

        A request still queued behind others is not the worker's fault (a backlog): look again
        later, once it may be the one running.
        """
        if request_id not in worker.outstanding or worker not in self._live:
            return
        running = next(iter(worker.outstanding))
        if running == request_id and time.monotonic() - worker.running_since >= self.stall_grace:
            log.error("PII analyzer process %d spent over %g s on one message past its deadline; replacing it",
                      worker.pid, self.stall_grace)
            worker.kill()  # the reader sees the exit and replaces it
            return
        asyncio.get_running_loop().call_later(self.stall_grace / 2, self._check_stalled, worker, request_id)

    def _task(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def _read_frame(stream: asyncio.StreamReader) -> Any:
    try:
        size = frame_size(await stream.readexactly(HEADER.size))
        return pickle.loads(await stream.readexactly(size))
    except asyncio.IncompleteReadError:
        return None


Analysis = ThreadAnalysis | ProcessAnalysis


def analysis_for(spec: AnalyzerSpec, *, workers: int, max_pending: int = 0) -> Analysis:
    """``workers`` processes, or for ``workers = 0`` one thread in guard's process."""
    if workers > 0:
        return ProcessAnalysis(spec, workers=workers, max_pending=max_pending)
    return ThreadAnalysis(spec.build(), max_pending=max_pending, cache_size=spec.cache_size)

