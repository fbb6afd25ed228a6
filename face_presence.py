"""Which of the faces the face stage found are the examinee being present, and which are counted.

The face stage (face_pipeline.FaceAnalyzer) gathers candidates from several looks: FaceMesh on the
frame (landmarks), the independent counter (MediaPipe FaceDetection on the frame and on square
tiles) and the small-face scan (full-range detection on zoomed tiles). Each look fires now and then
on things that are not faces: a patterned cushion, a shadow on a wall, a smear of texture. Counting
every candidate made an empty room "face present", so NO_FACE never fired. Here:

* **present** (the examinee is in front of the camera) needs either FaceMesh landmarks that a face
  detection of at least PRESENCE_CONFIRM_CONFIDENCE agreed with (in video mode the agreement holds
  for as long as FaceMesh keeps tracking that face), or a face detection alone of at least
  PRESENCE_DETECTION_CONFIDENCE (or with landmarks FaceMesh fitted on a zoomed crop, of at least
  PRESENCE_CONFIRM_CONFIDENCE) seen by two looks in a row; and in every case a face of plausible size (at least
  PRESENCE_MIN_FACE_FRACTION of the frame's short side). Small faces from the scan never make
  anyone present.
* In video mode a face that made the examinee present stays present while a detection of at least
  PRESENCE_KEEP_CONFIDENCE is at the same place (a face that dims or turns), and for RELOOK_FRAMES
  frames after it was lost the counter looks again on every frame.
* **counted** (for MULTIPLE_FACES) adds the other candidates (a weaker detection, a small background
  face) once they have persisted: seen at the same place by FACE_SECONDARY_PERSIST_RUNS looks in a
  row (video mode). A photo (static mode) has no second look, so there they count at once, as before.

A FaceMesh face no detection has agreed with yet keeps the counter running on every frame until one
does or the face is lost (``needs_counter``), so a real face is confirmed within a frame or two.

This module never imports Flask, the database or the web package; it keeps only the boxes of the
previous frames and reads no clock.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

Box = tuple[int, int, int, int]
RELOOK_FRAMES = 8  # after the examinee's face is lost, the counter looks on every frame this long (4 s at 2 frames/s)


# Two boxes are one face when they overlap this much (IoU) or the smaller lies mostly inside.
MERGE_IOU = 0.3
MERGE_CONTAINED = 0.6


def box_iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a = max(0, a[2] - a[0]) * max(0, a[3] - a[1])
    area_b = max(0, b[2] - b[0]) * max(0, b[3] - b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def same_face(a: Box, b: Box) -> bool:
    """One face seen twice: the boxes overlap (IoU) or the smaller lies mostly inside the other."""
    if box_iou(a, b) >= MERGE_IOU:
        return True
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return smaller > 0 and ix * iy / smaller >= MERGE_CONTAINED


@dataclass
class _Track:
    box: Box
    hits: int
    last_frame: int


@dataclass(frozen=True)
class PresenceDecision:
    present: tuple[int, ...]   # indices (into the faces given) of the faces that make the examinee present
    counted: tuple[int, ...]   # indices of every face counted (present ones first)
    needs_counter: bool        # a FaceMesh face waits for a detection to agree with it


class PresenceJudge:
    """One per stream (video mode) or per photo analyser (static mode)."""

    def __init__(self, config: Any, *, video: bool) -> None:
        self.config = config
        self.video = bool(video)
        self._frame = 0
        self._confirmed: list[Box] = []   # FaceMesh faces confirmed on the previous frame
        self._present: list[Box] = []     # faces that made the examinee present when last present
        self._absent_frames = 0           # frames since then
        self._tracks: list[_Track] = []   # secondary faces seen by recent looks

    def reset(self) -> None:
        self._frame = 0
        self._confirmed, self._present, self._tracks = [], [], []
        self._absent_frames = 0

    def judge(self, faces: Sequence[Any], frame_w: int, frame_h: int, *, fresh: Sequence[bool]) -> PresenceDecision:
        """faces: merged candidates with .box, .score, .source and .landmarks (FaceMesh ones carry
        landmarks), and .small (found by the small-face scan). fresh[i]: that face was looked for
        on this frame (a cached small-face box from an earlier scan is not fresh)."""
        cfg = self.config
        self._frame += 1
        min_side = float(cfg.PRESENCE_MIN_FACE_FRACTION) * min(frame_w, frame_h)
        confirm = float(cfg.PRESENCE_CONFIRM_CONFIDENCE)
        alone = float(cfg.PRESENCE_DETECTION_CONFIDENCE)
        keep = float(cfg.PRESENCE_KEEP_CONFIDENCE)
        present: list[int] = []
        secondary: list[int] = []
        confirmed_now: list[Box] = []
        waiting = False
        for i, face in enumerate(faces):
            big = min(face.box[2] - face.box[0], face.box[3] - face.box[1]) >= min_side
            small_scan = bool(getattr(face, "small", False))
            if face.source == "facemesh" and face.landmarks is not None:
                agreed = face.score >= confirm or (self.video and any(same_face(face.box, b) for b in self._confirmed))
                if agreed:
                    confirmed_now.append(face.box)
                    (present if big else secondary).append(i)
                else:
                    waiting = True
            elif not small_scan and big and self.video and face.score >= keep and any(
                    same_face(face.box, b) for b in self._present):
                present.append(i)  # the examinee's face, still there at a weaker score (dim, turned)
            elif not small_scan and big and (face.score >= alone or (face.landmarks is not None and face.score >= confirm)):
                # A face only a detector found (FaceMesh on a zoomed crop may have fitted it): strong
                # enough to be the examinee, once it has persisted (detectors flicker on texture).
                if not self.video or self._hits(face.box, fresh[i]) >= self._need():
                    present.append(i)
                else:
                    waiting = True
            else:
                secondary.append(i)
        self._confirmed = confirmed_now
        if present:
            self._present, self._absent_frames = [faces[i].box for i in present], 0
        else:
            self._absent_frames += 1
            if self._absent_frames > RELOOK_FRAMES:
                self._present = []
            # Just lost: look with the counter on every frame for a while (a dim or turned face flickers).
            waiting = waiting or bool(self._present)
        counted = list(present)
        counted += [i for i in secondary if not self.video or self._hits(faces[i].box, fresh[i]) >= self._need()]
        self._expire()
        return PresenceDecision(tuple(present), tuple(counted), waiting)

    def _need(self) -> int:
        return max(1, int(self.config.FACE_SECONDARY_PERSIST_RUNS))

    def _hits(self, box: Box, fresh: bool) -> int:
        """How many looks in a row saw a face here, this one included (a cached box is no new look)."""
        track = next((t for t in self._tracks if same_face(box, t.box)), None)
        if track is None:
            track = _Track(box, 1, self._frame)
            self._tracks.append(track)
        elif track.last_frame != self._frame:
            track.hits += 1 if fresh else 0
        track.box, track.last_frame = box, self._frame
        return track.hits

    def _expire(self) -> None:
        # A face not seen again within two of the slowest look's periods (the small-face scan) starts over.
        cfg = self.config
        ttl = 2 * max(int(cfg.FACE_SMALL_SCAN_EVERY_N_FRAMES), int(cfg.FACE_COUNTER_EVERY_N_FRAMES), 1) + 1
        self._tracks = [t for t in self._tracks if self._frame - t.last_frame <= ttl]
