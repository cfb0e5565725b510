"""The challenger, scored in shadow: off the request path, in batches, on one daemon thread.

A decision hands (decision_id, snapshot, row) to a bounded queue and moves on; the worker
collects up to BATCH items for at most BATCH_WAIT_S, scores them with the challenger in one call (a scorecard costs
~30 ms per call whatever the batch size, so batching is what makes it keep up) and writes
`decision_shadow_scores`. When the queue is full the item is dropped and counted: the shadow
must never slow or break a decision.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections import defaultdict
from typing import Any

import numpy as np
from sqlalchemy import Engine, insert

from fieldbank.decision.models import ShadowScore

log = logging.getLogger("fieldbank.decision")
MAX_QUEUE = 10_000
BATCH = 512
BATCH_WAIT_S = 0.25
_STOP = object()


class ShadowWorker:
    def __init__(self, engine: Engine, write_lock: Any, max_queue: int = MAX_QUEUE) -> None:
        self.engine = engine
        self.write_lock = write_lock  # the service's (SQLite: one writer at a time in this process)
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.dropped = 0
        self.scored = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="decision-shadow", daemon=True)
        self._thread.start()

    def submit(self, decision_id: str, snapshot: Any, row_index: int) -> None:
        try:
            self.queue.put_nowait((decision_id, snapshot, row_index))
        except queue.Full:
            self.dropped += 1

    def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until everything submitted so far is scored (tests, shutdown)."""
        done = threading.Event()
        try:
            self.queue.put((None, done, None), timeout=timeout_s)
        except queue.Full:
            return
        done.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        try:
            self.queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            items = [self.queue.get()]
            # Collect for up to BATCH_WAIT_S: a scorecard call costs about the same for 1 row or
            # 500, so fewer, fuller batches bound the shadow's CPU (at most 1 / BATCH_WAIT_S calls a second).
            deadline = time.monotonic() + BATCH_WAIT_S
            while len(items) < BATCH and items[-1] is not _STOP and items[-1][0] is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    items.append(self.queue.get(timeout=remaining))
                except queue.Empty:
                    break
            stop = any(i is _STOP for i in items)
            work = [i for i in items if i is not _STOP and i[0] is not None]
            if work:
                try:
                    self._score(work)
                except Exception:  # logged, counted, never raised into a request
                    self.failed += len(work)
                    log.exception("decision shadow: scoring %d decisions failed", len(work))
            for i in items:
                if i is not _STOP and i[0] is None:
                    i[1].set()  # a drain marker
            if stop:
                return

    def _score(self, work: list[tuple[str, Any, int]]) -> None:
        from fieldbank.risk.scoring import FastScorer

        groups: dict[int, list[tuple[str, Any, int]]] = defaultdict(list)
        for item in work:
            groups[id(item[1])].append(item)
        rows = []
        now = dt.datetime.now(dt.UTC)
        for items in groups.values():
            snap = items[0][1]
            models = snap.models
            frame = snap.portrait.frame.iloc[[i for _, _, i in items]]
            if models.challenger_scorer is not None:
                pds = np.concatenate([models.challenger_scorer.predict_pd(frame.iloc[s:s + FastScorer.MAX_ROWS])
                                      for s in range(0, len(frame), FastScorer.MAX_ROWS)])
            else:
                pds = models.challenger.predict_pd(frame)
            rows += [{"decision_id": d, "model_ref": models.challenger_ref, "pd_12m": float(p), "scored_at": now}
                     for (d, _, _), p in zip(items, pds)]
        with self.write_lock, self.engine.begin() as conn:
            conn.execute(insert(ShadowScore), rows)
        self.scored += len(rows)
