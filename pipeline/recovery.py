"""Lossless runs survive a stage killed mid-run: every frame's result reaches the sinks exactly once, in order.

How (only in a supervised `lossless` run; live runs and stages run by hand skip all of this):

- The sinks (record, display; classify when there is no sink) acknowledge the last frame they
  have durably handled over the control channel. The supervisor relays the lowest of those
  acknowledgements (the *floor*) to capture.
- Capture keeps every frame it sent above the floor (`SendWindow`, at most `restart.window`
  frames; it waits for acknowledgements when the window is full, which is the backpressure).
- When a stage comes back after a restart, the supervisor starts a new *epoch* and asks capture
  to resend its window. Every frame carries `info.epoch` and `info.floor`. Classify
  (`EpochGate`) drops frames of older epochs and restarts its ordering at the floor of a new
  epoch, so it releases floor+1, floor+2, ... again. A restarted capture starts after the floor.
- Each sink (`SinkGate`) takes only the next frame of the chain (`prev_seq == last handled`):
  repeats are dropped, and frames after a gap are dropped too because they will be resent.
- A frame can also vanish without any stage dying (taken by a stranger's socket on a tcp
  endpoint, refused as malformed). Capture reports the last frame it sent (`SENT`); when the sinks
  have handled nothing new for `ACK_TIMEOUT_S` while frames are outstanding, the supervisor asks
  capture to resend its window in the same epoch (the stages keep their ordering and drop what they
  already have, so only the gap fills and nothing is handled twice); after `MAX_RESENDS` such
  resends without progress (a minute: longer than any stall a loaded machine or a stopped stage
  should cause) the run ends, exit 1, with one line naming the frames that never arrived.
"""
from __future__ import annotations

from collections import OrderedDict

from pipeline.reorder import Reorderer
from pipeline.wire import Message

ACK, RESEND = "ack", "resend"  # control messages: stage -> supervisor {seq}; supervisor -> capture {seq} / {epoch, floor}
SENT = "sent"  # capture -> supervisor {seq}: the last frame sent (the watchdog compares it with the floor)
ACK_TIMEOUT_S = 10.0  # lossless: sent frames the sinks have not handled for this long are sent again
MAX_RESENDS = 5  # ... this many times in a row without progress, then the run ends naming the lost frames
EPOCH = "epoch"  # supervisor -> every other stage {epoch}: the newest epoch capture may stamp (sent before capture hears of it)


def stamp(message: Message, epoch: int, floor: int) -> Message:
    """Mark a frame (or end of stream) with the current epoch and acknowledged floor."""
    message.info["epoch"] = epoch
    message.info["floor"] = floor
    return message


class SendWindow:
    """Capture's frames sent but not yet acknowledged by every sink, in send order."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.floor = -1
        self._frames: OrderedDict[int, Message] = OrderedDict()

    def add(self, message: Message) -> None:
        self._frames[message.seq] = message

    def acknowledge(self, seq: int) -> None:
        """Forget every frame up to `seq`: the sinks have it."""
        self.floor = max(self.floor, seq)
        while self._frames and next(iter(self._frames)) <= self.floor:
            self._frames.popitem(last=False)

    def full(self) -> bool:
        return len(self._frames) >= self.size

    def pending(self) -> list[Message]:
        """Every unacknowledged frame, oldest first (what a resend sends again)."""
        return list(self._frames.values())

    def __len__(self) -> int:
        return len(self._frames)


class EpochGate:
    """The reordering stage's side: drop frames of a past epoch, restart the ordering at a new epoch's floor.

    An epoch is taken only once the supervisor has announced it (`allowed`): a frame claiming a later
    one (or none: capture marks every frame it sends under a supervisor) was not sent by capture, and
    taking it would make every real frame look stale."""

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.allowed = 0  # the newest epoch the supervisor announced
        self.refused = 0  # frames with an epoch nobody announced

    def admit(self, message: Message, reorder: Reorderer) -> bool:
        """False for a stale frame; on a new epoch, reset `reorder` to resume after its floor."""
        epoch, floor = message.info.get("epoch"), message.info.get("floor")
        if not isinstance(epoch, int) or not isinstance(floor, int) or epoch > self.allowed or floor >= message.seq:
            self.refused += 1
            return False
        if self.epoch is not None and epoch < self.epoch:
            return False
        if self.epoch is None or epoch > self.epoch:
            self.epoch = epoch
            reorder.reset(floor)
        return True


class SinkGate:
    """A sink's side: take each frame once, in order, and remember how far it got."""

    def __init__(self, last_handled: int = -1) -> None:
        self.last_handled = last_handled
        self.repeats = 0
        self.early = 0

    def admit(self, message: Message) -> bool:
        """True only for the frame right after the last handled one."""
        if message.kind == "eos":
            return message.info.get("last_seq", -1) <= self.last_handled
        if message.seq <= self.last_handled:
            self.repeats += 1
            return False
        if message.prev_seq != self.last_handled:
            self.early += 1  # a frame after a gap (lost at a crash): it comes again after the resend
            return False
        return True

    def handled(self, message: Message) -> None:
        self.last_handled = message.seq
