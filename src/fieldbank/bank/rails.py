"""Payment rails: how a draw leaves the bank. The service reserves the amount in the ledger
first, calls the rail outside any database transaction, then settles or reverses.

A rail must be idempotent per `transfer_id` (a retried call never pays twice) and must be
able to say what happened to a transfer after a timeout (`status`) and to cancel one that
has not executed (`cancel`).
"""

from __future__ import annotations

import threading
from typing import Literal, Protocol

RailStatus = Literal["settled", "failed", "unknown"]


class RailTimeout(Exception):
    """The rail did not answer in time: the transfer may or may not have executed."""


class PaymentRail(Protocol):
    name: str

    def disburse(self, transfer_id: str, party_id: str, amount_minor: int) -> RailStatus: ...

    def status(self, transfer_id: str) -> RailStatus: ...

    def cancel(self, transfer_id: str) -> bool: ...


class InternalRail:
    """The default rail: the borrower's payment account is at the bank, so the transfer is a
    book transfer from internal clearing (the ledger entry is the transfer). Always settles."""

    name = "internal"

    def disburse(self, transfer_id: str, party_id: str, amount_minor: int) -> RailStatus:
        assert amount_minor > 0
        return "settled"

    def status(self, transfer_id: str) -> RailStatus:
        return "unknown"

    def cancel(self, transfer_id: str) -> bool:
        return True


class ScriptedRail:
    """A rail for tests and drills: fails, times out (before or after executing) on demand, and
    counts executions per transfer so tests can prove nothing is paid twice."""

    name = "scripted"

    def __init__(self, script: list[str] | None = None) -> None:
        # Each disburse() call pops the next action: "ok", "fail", "timeout_lost" (never
        # executed), "timeout_done" (executed, answer lost). Empty script = "ok".
        self.script = list(script or [])
        self.executed: dict[str, int] = {}
        self.cancelled: set[str] = set()
        self._lock = threading.Lock()

    def disburse(self, transfer_id: str, party_id: str, amount_minor: int) -> RailStatus:
        with self._lock:
            action = self.script.pop(0) if self.script else "ok"
            if transfer_id in self.executed:  # idempotent per transfer id
                return "settled"
            if action == "fail":
                return "failed"
            if action in ("ok", "timeout_done"):
                self.executed[transfer_id] = self.executed.get(transfer_id, 0) + 1
            if action.startswith("timeout"):
                raise RailTimeout(transfer_id)
            return "settled"

    def status(self, transfer_id: str) -> RailStatus:
        with self._lock:
            if transfer_id in self.executed:
                return "settled"
            return "failed" if transfer_id in self.cancelled else "unknown"

    def cancel(self, transfer_id: str) -> bool:
        with self._lock:
            if transfer_id in self.executed:
                return False
            self.cancelled.add(transfer_id)
            return True
