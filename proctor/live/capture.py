"""A violation's evidence as the live runtime takes it (a mixin of LiveRuntime): the snapshot of the
frame that shows the reason, and the clip around it.

Per analysed frame the runtime only keeps references: the frame the detector last ran on, with that
run's result and face (Stream.detector_frame), and the last one on which the run itself saw a
prohibited object (Stream.object_frame), the page's own JPEG bytes. When a violation is stored the
chosen frame is drawn (views.evidence_shot, vision_ui.draw_evidence) and written, and the clip is
started (evidence.ClipRecorder): it spans from PROCTOR_LIVE_PREROLL_S before the rule's condition
began (the event's `since`) to PROCTOR_LIVE_POSTROLL_S after it fired, and is written when the
post-roll is over on the student's frame clock, when the session ends, or when the runtime stops.
The distributed mode (remote.py) hands its results to the same _handle_result, so it shares all this.
"""
from __future__ import annotations

import logging

from .views import EvidenceShot, draw_evidence_jpeg, evidence_shot, sighted_banned

log = logging.getLogger(__name__)

CLIP_RESULT_WAIT_S = 3.0     # a clip's post-roll waits this long (student's clock) for frames still being analysed
CONDITION_SPAN_MAX_S = 30.0  # the frames buffer covers the pre-roll plus the longest on-for time, at most this


def condition_span_s(config) -> float:
    """The longest time a frame rule's condition holds before it fires (its TIME_*_S on-for): a clip
    starts PROCTOR_LIVE_PREROLL_S before the condition began, so the frames buffer must reach that far."""
    on_for = (config.TIME_NO_FACE_S, config.TIME_HEAD_TURNED_S, config.TIME_EYES_CLOSED_S, config.TIME_GAZING_S,
              config.TIME_MULTIPLE_PERSONS_S, config.TIME_BANNED_OBJECT_S, config.TIME_IDENTITY_MISMATCH_S,
              config.TIME_CAMERA_OFF_S)
    return min(CONDITION_SPAN_MAX_S, max(float(v) for v in on_for))


class EvidenceCapture:
    """Provided by LiveRuntime: evidence (EvidenceStore), clips (ClipRecorder), settings, stats, _lock,
    _streams, _student_now. Every method runs on the live loop (or at stop), under the runtime's lock."""

    def _keep_detector_frame(self, stream, r) -> None:
        """After a result on stream.last_frame: when the detector ran on it, keep it as the detector's
        frame (references only; drawn if and when a violation is stored)."""
        if not r.detector_ran:
            return
        shot = EvidenceShot(stream.last_frame, r.face, stream.last_detections, r.frame_ts)
        stream.detector_frame = shot
        if sighted_banned(r.detections, stream.rules.config.banned_class_ids):
            stream.object_frame = shot

    def _save_snapshot(self, stream, stem: str, event) -> str | None:
        """The frame that shows the reason (for the detector's rules the one it ran on, with its boxes),
        drawn and written now: violations are rare (cooldowns), so this costs the loop little; its path
        relative to the data directory, or None."""
        shot = evidence_shot(stream, event.rule, event.details)
        if shot is None:
            return None
        jpeg = draw_evidence_jpeg(shot, event.rule, dict(event.details), event.t, stream.name, stream.student_id)
        if not jpeg:
            return None
        try:
            return self.evidence.save_snapshot(stream.session_id, stem, jpeg)
        except OSError as exc:
            log.error("evidence snapshot not written student=%s session=%s: %s", stream.student_id, stream.session_id, exc)
            return None

    def _save_clip_frames(self, stream, stem: str, event) -> str | None:
        """Start the violation's clip: from PROCTOR_LIVE_PREROLL_S before its condition began (the event's
        `since`; an instant event: when it came) to PROCTOR_LIVE_POSTROLL_S after it fired, as it is (the
        page's JPEGs with their times) in one file written when the post-roll is over; encoded only when a
        reviewer first opens it (proctor/evidence_files.py). Its path relative to the data directory, set
        in the violation at once, or None."""
        since = event.details.get("since")
        began = float(since) if isinstance(since, (int, float)) and not isinstance(since, bool) else None
        try:
            rel = self.clips.begin(stream.student_id, stream.session_id, stem, began, event.t)
        except OSError as exc:
            self.stats.count("clips_failed")
            log.error("clip not started student=%s session=%s: %s", stream.student_id, stream.session_id, exc)
            return None
        if rel is not None and self.settings.postroll_s <= 0:
            self.stats.count("clips_written")
        return rel

    def _finish_clips(self) -> None:
        """Write the clips whose post-roll is over by their student's clock (none recording: free)."""
        students = self.clips.recording()
        if not students:
            return
        with self._lock:
            for sid in students:
                stream = self._streams.get(sid)
                if stream is None:
                    self._finish_all_clips(sid)  # the stream went without closing them: what there is
                    continue
                # Done once a frame analysed after the post-roll says so; frames still with a worker are
                # waited for CLIP_RESULT_WAIT_S at most (the camera may have stopped sending).
                analysed = stream.last_frame.server_ts if stream.last_frame is not None else float("-inf")
                for _ in self.clips.finish_due(sid, max(analysed, self._student_now(stream) - CLIP_RESULT_WAIT_S)):
                    self.stats.count("clips_written")

    def _finish_all_clips(self, student_id: int | None = None) -> None:
        """A student's clips still recording (the session ended), or everyone's (the runtime stops),
        written with the frames they have."""
        with self._lock:
            for _ in self.clips.finish(student_id):
                self.stats.count("clips_written")
