"""Put frames back in capture order after workers that finish out of order.

Each frame carries `prev_seq`, the seq of the frame that entered the pipeline just before it,
so the chain is exact even when the live policy dropped frames at the entrance: no guessing
about gaps, no timeouts in the normal case.

Bounded: a frame more than `max_ahead` frames after the last one released, or one that would make
more than `max_pending` frames wait, is refused (counted in `refused`): no message can make the
buffer grow without bound or push the ordering so far ahead that every real frame looks old.
"""
from __future__ import annotations

import time

from pipeline.wire import Message


class Reorderer:
    """Holds early frames until their predecessor has been released."""

    def __init__(self, max_ahead: int = 1 << 16, max_pending: int = 1024) -> None:
        self.last_released = -1
        self.max_ahead, self.max_pending = max_ahead, max_pending
        self.refused = 0  # frames outside the window, or beyond the buffer's bound
        self._pending: dict[int, tuple[float, Message]] = {}  # keyed by prev_seq

    def push(self, message: Message) -> list[Message]:
        """Add one frame; return the frames now ready, in order."""
        if message.seq <= self.last_released and self.last_released >= 0:
            return []  # a duplicate (e.g. resent after a restart): already released once
        if (message.seq - self.last_released > self.max_ahead or message.prev_seq < self.last_released
                or (len(self._pending) >= self.max_pending and message.prev_seq not in self._pending)):
            self.refused += 1
            return []
        self._pending[message.prev_seq] = (time.monotonic(), message)
        return self._release()

    def waiting_after(self, seq: int) -> bool:
        """True when a frame later than `seq` is held (an end of stream at `seq` cannot be the real one)."""
        return any(message.seq > seq for _, message in self._pending.values())

    def _release(self) -> list[Message]:
        ready = []
        while self.last_released in self._pending:
            _, message = self._pending.pop(self.last_released)
            ready.append(message)
            self.last_released = message.seq
        return ready

    def expire(self, max_wait_s: float) -> tuple[list[Message], int]:
        """Live mode: give up on a predecessor that never came (a lost frame) once a later frame
        has waited `max_wait_s`. Returns the frames released and how many were skipped."""
        if not self._pending:
            return [], 0
        oldest = min(arrived for arrived, _ in self._pending.values())
        if time.monotonic() - oldest < max_wait_s:
            return [], 0
        prev_seq = min(self._pending, key=lambda key: self._pending[key][1].seq)
        self.last_released = prev_seq
        return self._release(), 1

    def reset(self, last_released: int) -> None:
        """Start again after `last_released`, forgetting what is held (a lossless resend follows)."""
        self.last_released = last_released
        self._pending.clear()

    def complete(self, last_seq: int) -> bool:
        """True once every frame up to `last_seq` has been released."""
        return self.last_released >= last_seq

    def __len__(self) -> int:
        return len(self._pending)
