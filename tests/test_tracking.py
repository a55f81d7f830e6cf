"""Per-face time-averaged scores (liveness.tracking): matching faces over frames and the average."""
from __future__ import annotations

import math

import pytest

from liveness.tracking import ScoreSmoother, iou, smooth_frame
from pipeline.wire import Face

FRAME = 1 / 30


def test_iou_of_hand_drawn_boxes() -> None:
    assert iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # touching edges share no area
    assert iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0


def test_a_new_face_has_its_own_score_then_the_average_follows_media_time() -> None:
    smoother = ScoreSmoother(time_constant_s=0.5)
    assert smoother.update(0.0, [[0, 0, 100, 100]], [0.9]) == [(0, 0.9)]
    weight = 1 - math.exp(-FRAME / 0.5)
    [(track, score)] = smoother.update(FRAME, [[2, 0, 102, 100]], [0.1])
    assert track == 0 and score == pytest.approx(0.9 + weight * (0.1 - 0.9))
    # three frames later (two dropped): the new frame weighs what three frames' time span gives it
    weight3 = 1 - math.exp(-3 * FRAME / 0.5)
    [(track, later)] = smoother.update(4 * FRAME, [[4, 0, 104, 100]], [0.1])
    assert track == 0 and later == pytest.approx(score + weight3 * (0.1 - score))


def test_faces_keep_their_tracks_whatever_order_the_detector_lists_them() -> None:
    smoother = ScoreSmoother(time_constant_s=0.5)
    left, right = [0, 0, 100, 100], [300, 0, 400, 100]
    assert smoother.update(0.0, [left, right], [0.9, 0.1]) == [(0, 0.9), (1, 0.1)]
    results = smoother.update(FRAME, [[305, 0, 405, 100], [5, 0, 105, 100]], [0.1, 0.9])
    assert [track for track, _ in results] == [1, 0]
    assert results[0][1] == pytest.approx(0.1) and results[1][1] == pytest.approx(0.9)


def test_the_best_overlap_wins_a_contested_track() -> None:
    smoother = ScoreSmoother(time_constant_s=0.5)
    smoother.update(0.0, [[0, 0, 100, 100]], [0.8])
    results = smoother.update(FRAME, [[60, 0, 160, 100], [10, 0, 110, 100]], [0.2, 0.7])
    assert results[1][0] == 0 and results[0] == (1, 0.2)  # the closer box continues the face, the other is new


def test_a_face_gone_too_long_or_moved_away_starts_afresh() -> None:
    smoother = ScoreSmoother(time_constant_s=0.5, max_gap_s=0.5)
    smoother.update(0.0, [[0, 0, 100, 100]], [0.9])
    assert smoother.update(0.6, [[0, 0, 100, 100]], [0.2]) == [(1, 0.2)]  # unseen 0.6 s > 0.5 s
    assert smoother.update(0.6 + FRAME, [[200, 0, 300, 100]], [0.7]) == [(2, 0.7)]  # no overlap


def test_time_going_back_is_a_new_scene() -> None:
    smoother = ScoreSmoother(time_constant_s=0.5)
    smoother.update(5.0, [[0, 0, 100, 100]], [0.9])
    assert smoother.update(0.0, [[0, 0, 100, 100]], [0.2]) == [(1, 0.2)]  # a looped file or a restarted capture


def _faces(*scores: float) -> list[Face]:
    return [Face([i * 200, 0, i * 200 + 100, 100], 0.99, score, "real" if score >= 0.5 else "fake", 0.5)
            for i, score in enumerate(scores)]


def test_smooth_frame_relabels_by_the_average_and_keeps_the_frames_own_score() -> None:
    smoother = ScoreSmoother(time_constant_s=0.5)
    smooth_frame(smoother, 0, {"fps": 30.0}, _faces(0.9))
    faces = _faces(0.1)
    smooth_frame(smoother, 1, {"fps": 30.0}, faces)
    assert faces[0].track == 0 and faces[0].frame_score == 0.1
    assert faces[0].score == pytest.approx(0.9 - (1 - math.exp(-FRAME / 0.5)) * 0.8)
    assert faces[0].label == "real"  # one low frame does not flip a face that looked live so far


def test_smooth_frame_leaves_stills_and_unscored_faces_alone() -> None:
    smoother = ScoreSmoother(time_constant_s=0.5)
    smooth_frame(smoother, 0, {"fps": 30.0}, _faces(0.9))
    still = _faces(0.1)
    smooth_frame(smoother, 1, {"fps": 30.0, "still": True}, still)
    assert (still[0].score, still[0].label, still[0].track, still[0].frame_score) == (0.1, "fake", None, None)
    unscored = [Face([0, 0, 100, 100], 0.99)]
    smooth_frame(smoother, 2, {"fps": 30.0}, unscored)
    assert unscored[0].track is None and unscored[0].score is None
    off = _faces(0.1)
    smooth_frame(None, 3, {"fps": 30.0}, off)
    assert off[0].track is None and off[0].score == 0.1
