"""When one stream's frames get the object detector: by scene, not on a fixed one frame in N.

The detector (CenterNet, about 75 CPU-ms a run with its second look) is the largest cost per
student, and in a steady scene it keeps finding the same thing. A DetectorCadence decides, frame by
frame, whether the detector runs:

  first    the first frame of the stream (and again when frame time goes back);
  watch    every DETECTOR_FAST_INTERVAL_S while a prohibited object, a phone at the ear
           (Detections.phone_at_ear) or an extra person is being
           confirmed or is present: one of the last OBJECT_EVIDENCE_WINDOW_RUNS runs saw it (the
           window person_pipeline.ObjectEvidence counts k of n in), or the rules see a confirmed
           object. Never slower than TIME_BANNED_OBJECT_S, TIME_MULTIPLE_PERSONS_S or
           OBSERVATION_STALE_S, so a real object is confirmed within its persistence time and its
           evidence never goes stale while present;
  hold     every DETECTOR_HOLD_INTERVAL_S instead, once the thing is confirmed and steadily there:
           the rules see it (after ObjectEvidence) and the last DETECTOR_HOLD_AFTER_RUNS runs all saw
           it themselves. A run that misses it goes back to `watch`, so the end of the condition is
           found at the fast pace. A phone left on the desk for the whole exam then costs a run every
           1.5 s, not on every frame, and its evidence never goes stale (the interval is at most
           3/4 of OBSERVATION_STALE_S);
  change   on the next frame after a change since the detector's last run: motion in the lower half
           of the picture (hands, desk: FrameResult.lower_motion above DETECTOR_MOTION_DIFF), the
           face count changed (a face lost, back, or another one), the head turned or tilted more
           than DETECTOR_POSE_CHANGE_DEG. Not sooner than DETECTOR_CHANGE_MIN_INTERVAL_S after the
           previous run, so continuous movement (writing) costs no more than the old 1 in 2 frames;
  steady   otherwise once every DETECTOR_STEADY_INTERVAL_S.

    cadence = DetectorCadence(exam_config)
    reason = cadence.due(frame_t)          # "first" | "watch" | "hold" | "motion" | ... | "steady" | None
    if reason: cadence.ran(frame_t, reason)  # the frame goes to the worker with the detector on
    cadence.observe(result, detections)    # each FrameResult in; detections after ObjectEvidence

Plain state, no I/O, no clock of its own (frame time only): the runtime's Stream owns one.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

TIME_EPS_S = 1e-6  # frame times are floats: 3.5 - 0.5 is a full 3 s
HOLD_STALE_SHARE = 0.75  # a held object is looked at again within this share of OBSERVATION_STALE_S


def _face_state(face) -> tuple[int, float | None, float | None] | None:
    """(face count, yaw, pitch) of a FaceObservation; None when the face stage did not run."""
    if face is None or not hasattr(face, "face_count"):
        return None
    count = int(face.face_count) if face.face_detected else 0
    return count, face.yaw_deg, face.pitch_deg


class DetectorCadence:
    """Whether a frame gets the object detector, from what the stream's recent results showed."""

    def __init__(self, config):
        self.steady_s = float(config.DETECTOR_STEADY_INTERVAL_S)
        # While watching, never slower than the object's persistence time and the evidence's shelf life.
        self.fast_s = min(float(config.DETECTOR_FAST_INTERVAL_S), float(config.TIME_BANNED_OBJECT_S),
                          float(config.TIME_MULTIPLE_PERSONS_S), float(config.OBSERVATION_STALE_S))
        self.change_min_s = float(config.DETECTOR_CHANGE_MIN_INTERVAL_S)
        self.motion_diff = float(config.DETECTOR_MOTION_DIFF)
        self.pose_deg = float(config.DETECTOR_POSE_CHANGE_DEG)
        self.window_runs = int(config.OBJECT_EVIDENCE_WINDOW_RUNS)
        # Holding a confirmed, steadily seen object: slower than watching, and well within the evidence's
        # shelf life (3/4 of OBSERVATION_STALE_S at most: an exam that shortens it shortens the hold too).
        self.hold_s = max(self.fast_s, min(float(config.DETECTOR_HOLD_INTERVAL_S),
                                           HOLD_STALE_SHARE * float(config.OBSERVATION_STALE_S)))
        self.hold_after = int(config.DETECTOR_HOLD_AFTER_RUNS)
        self.seen_streak = 0                   # consecutive runs whose own result showed the thing
        self.confirmed = False                 # the latest run's result, after ObjectEvidence, shows it
        self.banned = frozenset(int(c) for c in config.banned_class_ids)
        self.last_run_t: float | None = None   # frame time of the latest frame sent with the detector
        self.change: str | None = None         # the first change seen since then (waits for its run)
        self.quiet_runs = self.window_runs     # runs since one saw a prohibited object or an extra person
        self._ref: tuple | None = None         # (faces, yaw, pitch) on the latest run's frame
        self.reasons: Counter = Counter()      # runs by reason (status, bench, tests)

    @property
    def watching(self) -> bool:
        """A prohibited object or an extra person is being confirmed or is present."""
        return self.quiet_runs < self.window_runs

    @property
    def holding(self) -> bool:
        """The thing watched is confirmed and every one of the last DETECTOR_HOLD_AFTER_RUNS runs saw it."""
        return self.watching and self.confirmed and self.seen_streak >= self.hold_after > 0

    def due(self, frame_t: float, stretch: float = 1.0) -> str | None:
        """Why a frame at frame time `frame_t` should get the detector, or None (no state changes).

        `stretch` (>= 1) lengthens the steady and change intervals when the workers analyse only one
        frame in N of this stream (overload): the detector then keeps its share of the analysed
        frames instead of landing on nearly every one of them. Watching an object is not stretched."""
        stretch = max(1.0, float(stretch))
        if self.last_run_t is None:
            return "first"
        since = frame_t - self.last_run_t
        if since < 0:
            return "first"  # frame time went back (the page reloaded): start over
        if self.watching:
            if self.holding:
                if since + TIME_EPS_S >= self.hold_s:
                    return "hold"
            elif since + TIME_EPS_S >= self.fast_s:
                return "watch"
        if self.change is not None and since + TIME_EPS_S >= self.change_min_s * stretch:
            return self.change
        if since + TIME_EPS_S >= self.steady_s * stretch:
            return "steady"
        return None

    def ran(self, frame_t: float, reason: str) -> None:
        """The frame at `frame_t` was sent with the detector on (for `reason`)."""
        self.last_run_t = float(frame_t)
        self.change = None
        self.reasons[reason] += 1

    def observe(self, result: Any, detections: Any = None) -> str | None:
        """Take one FrameResult in, in order. `detections`: what the rules see after ObjectEvidence
        (only confirmed prohibited objects). Returns the change this frame showed, if any."""
        state = _face_state(result.face)
        if result.detector_ran or (self.last_run_t is not None and result.frame_ts == self.last_run_t):
            if result.detector_ran:
                own = self._busy(result.detections)
                self.confirmed = self._busy(detections)
                self.seen_streak = self.seen_streak + 1 if own else 0
                seen = own or self.confirmed
                self.quiet_runs = 0 if seen else min(self.window_runs, self.quiet_runs + 1)
            self._ref = state
            return None
        change = self._change(result, state)
        if change is not None and self.change is None:
            self.change = change
        return change

    def _busy(self, dets) -> bool:
        """A prohibited object, a phone at the ear or more than one person in a detector result."""
        if dets is None:
            return False
        return (dets.person_count > 1 or any(d.class_id in self.banned for d in dets.items)
                or bool(getattr(dets, "phone_at_ear", False)))

    def _change(self, result, state) -> str | None:
        motion = getattr(result, "lower_motion", None)
        if motion is not None and motion > self.motion_diff:
            return "motion"
        ref = self._ref
        if state is None or ref is None:
            return None
        if state[0] != ref[0]:
            return "face_lost" if state[0] == 0 else ("face_back" if ref[0] == 0 else "faces")
        for now, then in ((state[1], ref[1]), (state[2], ref[2])):
            if now is not None and then is not None and abs(now - then) > self.pose_deg:
                return "pose"
        return None

    def summary(self) -> dict:
        """For the stream's status: runs by reason and whether it is watching."""
        return {"watching": self.watching, "holding": self.holding, "runs": dict(self.reasons)}
