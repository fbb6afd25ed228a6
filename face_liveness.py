"""Liveness: a still picture held to the camera neither blinks nor turns its head.

Used at the identity confirmation before the exam (proctor/student/identity.py) on the face stage's
observations (face_pipeline.FaceObservation). Pure: it uses only the frame times it is given.
This module never imports Flask, the database or the web package.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable

from face_pipeline import FaceObservation


@dataclass(frozen=True)
class LivenessState:
    passed: bool
    blink_seen: bool
    head_turn_seen: bool
    reason: str


class LivenessCheck:
    """Passes once, within LIVENESS_WINDOW_S of frame time, a blink (EAR below EAR_THRESHOLD,
    then back above EAR_THRESHOLD + LIVENESS_EAR_OPEN_MARGIN within LIVENESS_BLINK_MAX_S) or a
    head turn (yaw moves LIVENESS_TURN_DEG away from where it started and comes back within
    half that) is seen. Pure: uses only the times it is given. Once passed it stays passed
    until reset().
    """

    def __init__(self, config: Any) -> None:
        self.config = config
        self._window = float(config.LIVENESS_WINDOW_S)
        self._turn = float(config.LIVENESS_TURN_DEG)
        self._closed_below = float(config.EAR_THRESHOLD)
        self._open_above = float(config.EAR_THRESHOLD) + float(config.LIVENESS_EAR_OPEN_MARGIN)
        self._blink_max = float(config.LIVENESS_BLINK_MAX_S)
        self.reset()

    def reset(self) -> None:
        self._samples: deque[tuple[float, float | None, float | None]] = deque()
        self._blink = False
        self._turned = False
        self._last_t: float | None = None

    def update(self, obs: FaceObservation | None, t: float) -> LivenessState:
        t = float(t)
        if not math.isfinite(t):
            raise ValueError("liveness time must be a finite number")
        if self._last_t is not None and t < self._last_t:
            self._samples.clear()  # time went backwards: a new stream
        self._last_t = t
        if self._blink or self._turned:
            return self._state("")
        if obs is None or not obs.face_detected:
            self._samples.append((t, None, None))
        else:
            self._samples.append((t, obs.ear, obs.yaw_deg))
        while self._samples and self._samples[0][0] < t - self._window:
            self._samples.popleft()
        self._blink = self._blink_in(self._samples)
        self._turned = self._turn_in(self._samples)
        if self._blink or self._turned:
            return self._state("")
        if obs is None or not obs.face_detected:
            return self._state("no face in view")
        if obs.ear is None and obs.yaw_deg is None:
            return self._state("face found but no landmarks (eyes and pose unknown)")
        span = t - self._samples[0][0]
        if span >= self._window * 0.999:
            return self._state(f"no blink or head turn in the last {self._window:g} s (a still picture?)")
        return self._state(f"waiting for a blink or a head turn ({span:.1f} s of {self._window:g} s)")

    def _state(self, reason: str) -> LivenessState:
        passed = self._blink or self._turned
        if passed:
            reason = " and ".join(r for r, ok in (("blink seen", self._blink), ("head turn seen", self._turned)) if ok)
        return LivenessState(passed=passed, blink_seen=self._blink, head_turn_seen=self._turned, reason=reason)

    def _blink_in(self, samples: Iterable[tuple[float, float | None, float | None]]) -> bool:
        phase, closed_at = "start", 0.0
        for t, ear, _ in samples:
            if ear is None:
                continue
            if ear >= self._open_above:
                if phase == "closed" and t - closed_at <= self._blink_max:
                    return True
                phase = "open"
            elif ear < self._closed_below and phase == "open":
                phase, closed_at = "closed", t
        return False

    def _turn_in(self, samples: Iterable[tuple[float, float | None, float | None]]) -> bool:
        start = None
        away = False
        for _, _, yaw in samples:
            if yaw is None:
                continue
            if start is None:
                start = yaw
                continue
            delta = abs(yaw - start)
            if delta >= self._turn:
                away = True
            elif away and delta <= self._turn / 2.0:
                return True
        return False
