"""Follow faces from frame to frame and average each face's liveness score over time.

One frame's score is noisy (motion blur, a glint, a half-turned head), while a video shows the
same face for many frames: the decision about a face should rest on the last fraction of a
second of it, not on one frame. `ScoreSmoother` matches each frame's boxes to the faces of the
previous frames by overlap (greedy, highest IoU first) and keeps, per face, an exponential
moving average of its score whose weight follows media time, so dropped frames count as the
time they span. A face seen for the first time gets its own frame's score.

Stills (an image folder) are independent pictures and are not smoothed.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Box = Sequence[int]  # x1, y1, x2, y2 in pixels


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One face followed over frames."""

    id: int
    box: Box
    score: float  # time-averaged P(real)
    t: float  # media time (s) of the last frame that showed it


class ScoreSmoother:
    """Per-face time-averaged scores for one stream of frames, given in capture order."""

    def __init__(self, time_constant_s: float, min_iou: float = 0.3, max_gap_s: float = 0.5) -> None:
        """time_constant_s (tau): the average's memory, a past frame's weight falls by a factor e every
        tau seconds; a face unseen for more than max_gap_s, or whose box overlaps less than min_iou, is new."""
        self.time_constant_s = time_constant_s
        self.min_iou = min_iou
        self.max_gap_s = max_gap_s
        self.tracks: list[Track] = []
        self.next_id = 0

    def update(self, t: float, boxes: Sequence[Box], scores: Sequence[float]) -> list[tuple[int, float]]:
        """(track id, smoothed score) for each face of the frame at media time t (seconds)."""
        if self.tracks and t < max(track.t for track in self.tracks):
            self.tracks = []  # time went back: a looped file or a restarted capture is a new scene
        self.tracks = [track for track in self.tracks if t - track.t <= self.max_gap_s]
        pairs = sorted(((iou(box, track.box), face, number) for face, box in enumerate(boxes)
                        for number, track in enumerate(self.tracks)), reverse=True)
        matched: dict[int, Track] = {}
        taken: set[int] = set()
        for overlap, face, number in pairs:
            if overlap < self.min_iou:
                break
            if face not in matched and number not in taken:
                matched[face] = self.tracks[number]
                taken.add(number)
        results = []
        for face, (box, score) in enumerate(zip(boxes, scores)):
            track = matched.get(face)
            if track is None:
                track = Track(self.next_id, box, float(score), t)
                self.next_id += 1
                self.tracks.append(track)
            else:
                weight = 1.0 - math.exp(-(t - track.t) / self.time_constant_s) if self.time_constant_s > 0 else 1.0
                track.score += weight * (float(score) - track.score)
                track.box, track.t = box, t
            results.append((track.id, track.score))
        return results


class ScoredFace(Protocol):
    """What smoothing reads and writes on a face (pipeline.wire.Face)."""

    box: list[int]
    score: float | None
    label: str | None
    threshold: float | None
    frame_score: float | None
    track: int | None


def smooth_frame(smoother: ScoreSmoother | None, seq: int, info: Mapping[str, Any], faces: Sequence[ScoredFace]) -> None:
    """Give each classified face of frame `seq` its track and time-averaged score; the label follows
    the averaged score and `frame_score` keeps the frame's own. Stills and unscored faces are left alone."""
    if smoother is None or not faces or info.get("still") or any(face.score is None or face.threshold is None for face in faces):
        return
    fps = info.get("fps") or 30.0
    results = smoother.update(seq / fps, [face.box for face in faces], [float(face.score) for face in faces])  # type: ignore[arg-type]
    for face, (track, score) in zip(faces, results):
        face.frame_score, face.track, face.score = face.score, track, score
        face.label = "real" if score >= face.threshold else "fake"  # type: ignore[operator]
