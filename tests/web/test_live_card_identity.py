"""The live card's identity chip (static/js/admin/live.js describe()), run in Node: the last verdict in a
word, and a warning when no face has been judgeable for a while (too small or turned: the identity check
waits instead of judging, so a student who stays far away would otherwise never be checked unseen)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")

HARNESS = r"""
const fs = require("fs");
const input = JSON.parse(fs.readFileSync(0, "utf8"));
global.window = global;
global.document = {getElementById: () => null, createElement: () => ({}), querySelectorAll: () => []};
window.Proctor = {rules: () => ({})};
new Function(fs.readFileSync(input.root + "/static/js/admin/live.js", "utf8"))();
console.log(JSON.stringify(input.statuses.map((s) => {
  const d = window.AdminLive.describe(s);
  return {text: d.identityText, level: d.identityLevel, faceKnown: d.faceKnown};
})));
"""

CASES = [
    ({}, "identity: not checked yet", "none"),
    ({"identity": {"enrolled": True, "match": None}}, "identity: not checked yet", "none"),
    ({"identity": {"enrolled": True, "match": True, "distance": 0.3}}, "identity: matches", "ok"),
    ({"identity": {"enrolled": True, "match": False, "distance": 0.6}}, "identity: mismatch", "bad"),
    ({"identity": {"enrolled": True, "match": False, "spoof": True}}, "identity: a photo or screen", "bad"),
    ({"identity": {"enrolled": False}}, "identity: no registered face", "warn"),
    # a short wait keeps the last verdict; a long one is the proctor's business
    ({"identity": {"enrolled": True, "match": True, "skipped": "face too small: 70 px, at least 80 px needed",
                   "skipped_for_s": 8}}, "identity: matches", "ok"),
    ({"identity": {"enrolled": True, "match": True, "skipped": "face too small: 70 px, at least 80 px needed",
                   "skipped_for_s": 47.4}}, "identity: unchecked 47 s (face too small)", "warn"),
    ({"identity": {"enrolled": True, "match": None, "skipped": "face turned: yaw 41 deg", "skipped_for_s": 31}},
     "identity: unchecked 31 s (face turned)", "warn"),
    ({"faces": 1, "identity": {"enrolled": True, "match": True}}, "identity: matches", "ok"),
    ({"faces": 0}, "identity: not checked yet", "none"),
]


def test_identity_chip_says_the_verdict_or_how_long_it_has_waited():
    assert NODE, "node runs the page script (scripts/test installs nodejs)"
    out = subprocess.run([NODE, "-e", HARNESS], capture_output=True, text=True, timeout=60,
                         input=json.dumps({"root": str(ROOT), "statuses": [c[0] for c in CASES]}))
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert [{"text": g["text"], "level": g["level"]} for g in got] == [{"text": t, "level": lv} for _, t, lv in CASES]
    # A card with no analysed frame yet says nothing about the face (it showed a green chip)
    assert [g["faceKnown"] for g in got] == ["faces" in status for status, _, _ in CASES]
