"""Smoke tests of bench/fairness.py: the labels cover every photo with a person, the frames it builds
have the size and face size they claim, and its tables have the shape docs/fairness.md quotes.
No figures are asserted here (the bench prints them)."""
from __future__ import annotations

import sys
from pathlib import Path


from tests.vision.conftest import REPO_ROOT

# bench/ on the path as the script has it (its modules import one another by name; none shares a name
# with a module of the project's own: bench/presentation_attack.py was renamed for that reason).
sys.path.insert(0, str(REPO_ROOT / "bench"))
import fairness  # noqa: E402


def test_labels_cover_every_testdata_photo_with_a_person(testdata_dir):
    labels = fairness.load_labels()
    people = fairness.photos_with_people(testdata_dir)
    assert len(people) >= 45  # 10 photos at the top, obama, obama2, biden, 35 in identity/people
    assert [n for n in people if n not in labels] == []
    assert sorted(labels) == sorted(people), "a label for a photo that is not in testdata"
    for lab in labels.values():
        assert len(lab.groups) == len(lab.gender) == lab.faces <= lab.people, lab.file
        assert set(lab.groups) <= {"1-3", "4-7", "8-10"}
    assert {labels[n].group for n in people} <= set(fairness.GROUPS)


def test_the_docs_table_quotes_the_labels_file():
    doc = (REPO_ROOT / "docs" / "fairness.md").read_text(encoding="utf-8")
    for name, lab in fairness.load_labels().items():
        row = next((ln for ln in doc.splitlines() if ln.startswith(f"| {Path(name).name} |")), None)
        assert row is not None, f"docs/fairness.md has no row for {name}"
        assert f"| {' / '.join(lab.groups)} |" in row, row


def test_frames_are_webcam_sized_and_faces_land_in_their_size_band(testdata_dir):
    from config_vision import load_vision_config
    from face_pipeline import FaceAnalyzer

    img = fairness.read(testdata_dir, "identity/people/p06_img21.jpg")
    with FaceAnalyzer(load_vision_config(env={}), static_image_mode=True) as faces:
        boxes = faces.analyze(img).face_boxes
        assert len(boxes) == 1
        cells = fairness.conditions(img, boxes)
        assert [c[1] for c in cells if c[0] == "lighting"] == [n for n, _, _ in fairness.LIGHTING]
        assert {c[1] for c in cells if c[0] == "size"} == {n for n, _ in fairness.SIZES}
        assert all(c[2].shape == (fairness.FRAME_H, fairness.FRAME_W, 3) for c in cells)
        for (lo, hi), (_, _, frame, _, _) in zip(fairness.SIZE_BANDS, [c for c in cells if c[0] == "size"]):
            box = faces.analyze(frame).box
            assert box is not None
            px = min(box[2] - box[0], box[3] - box[1])
            assert lo * 0.8 <= px < hi * 1.2, (lo, hi, px)


def test_a_size_cell_needing_a_large_upscale_is_left_out():
    import numpy as np

    img = np.zeros((480, 640, 3), np.uint8)
    assert fairness.sized_frame(img, ((300, 200, 340, 240),), 200) is None  # 40 px -> 200 px is 5x
    frame, inside = fairness.sized_frame(img, ((300, 200, 340, 240),), 48)
    assert frame.shape == (480, 640, 3) and inside == 1


def test_tally_table_shape(capsys):
    t = fairness.Tally()
    t.add("m", "lighting", "gamma 1", "1-3", 1, 4)
    t.add("m", "lighting", "gamma 1", "4-7", 0, 2)
    t.add("m", "size", "face <64 px", "mixed", 1)
    t.table("m", "title")
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("|")]
    assert lines[0] == "| condition | MST 1-3 | MST 4-7 | MST 8-10 | mixed | all |"
    assert lines[2] == "| gamma 1 | 1/4 | 0/2 | - | - | 1/6 |"
    assert lines[3] == "| face <64 px | - | - | - | 1/1 | 1/1 |"
    assert len(lines) == 4  # conditions without data are left out


def test_a_clip_of_a_frontal_photo_sees_the_face(testdata_dir):
    from config_vision import load_vision_config

    img = fairness.read(testdata_dir, "a_3_face_closeup_sergey.png")
    r = fairness.clip(load_vision_config(env={}), None, fairness.fit_frame(img), 1.0, 1.0, frames=4, seed=0)
    assert r["judged"] == 3 and r["absent"] == 0 and "NO_FACE" not in r["started"]
