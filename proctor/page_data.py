"""Facts the pages need, rendered into them from the one place they live.

The site's CSP forbids inline executable scripts, so a page gets its facts as a JSON data block,
``<script type="application/json" id="proctor-rules">``, which static/js/common.js reads with
``Proctor.rules()``. In a template: ``{{ rules_script() }}``, or ``{{ rules_script(overrides=exam.thresholds) }}``
on a page of one exam (its threshold overrides, as the live runtime applies them), or
``{{ rules_script(config) }}`` with a ready VisionConfig.

The block holds, for every rule of config_vision.RULE_REGISTRY, its name, title, severity, the
student's message and the exam page's thresholds (read from the same vision settings the server
uses), the names of the Socket.IO events pushed to admins, and the wording of every violation
(proctor/wording.py: admin sentence template, student sentence, severity label and icon), and the
names of known virtual cameras (proctor/devices.py).
"""
from __future__ import annotations

import json
import logging
from typing import Any, Mapping

from flask import Flask, current_app
from jinja2.utils import htmlsafe_json_dumps
from markupsafe import Markup

import config_vision
from config_vision import VisionConfig, VisionConfigError

from .devices import VIRTUAL_CAMERA_NAMES
from .live.events import ADMIN_EVENTS
from . import wording
from .wording import wording_facts

log = logging.getLogger(__name__)

DATA_BLOCK_ID = "proctor-rules"


def server_vision_config(app: Flask | None = None) -> VisionConfig:
    """The vision settings the server runs with (as the live runtime loads them): the environment
    and PROCTOR_VISION_OVERRIDES, read once per app, not on every page render or request."""
    app = app or current_app._get_current_object()
    overrides = dict(app.config.get("PROCTOR_VISION_OVERRIDES") or {})
    key = json.dumps(overrides, sort_keys=True, default=str)
    cached = app.extensions.get("server_vision_config")
    if cached is None or cached[0] != key:
        cached = app.extensions["server_vision_config"] = (key, config_vision.load_vision_config(**overrides))
    return cached[1]


def _with_exam_overrides(config: VisionConfig, overrides: Mapping[str, Any] | str | None) -> VisionConfig:
    """Apply an exam's threshold overrides (a dict or its stored JSON text); bad ones are logged and
    ignored, as the live runtime does, so the page and the server still agree."""
    if not overrides:
        return config
    try:
        data = json.loads(overrides) if isinstance(overrides, str) else dict(overrides)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return config.with_overrides(**data) if data else config
    except (ValueError, TypeError, VisionConfigError) as exc:
        log.error("page data: bad exam vision thresholds (%s); using the server's settings", exc)
        return config


def page_facts(config: VisionConfig | None = None, overrides: Mapping[str, Any] | str | None = None) -> dict:
    """The JSON-able facts rendered into pages."""
    config = _with_exam_overrides(config or server_vision_config(), overrides)
    return {**config_vision.browser_rules(config), "admin_events": list(ADMIN_EVENTS), "wording": wording_facts(),
            "virtual_cameras": list(VIRTUAL_CAMERA_NAMES)}


def rules_script(config: VisionConfig | None = None, overrides: Mapping[str, Any] | str | None = None) -> Markup:
    """The facts as a JSON data block (HTML-safe: <, >, & and ' are escaped inside the JSON)."""
    data = htmlsafe_json_dumps(page_facts(config, overrides))
    return Markup(f'<script type="application/json" id="{DATA_BLOCK_ID}">{data}</script>')


def init_app(app: Flask) -> None:
    """Make ``rules_script`` and the violation wording (proctor/wording.py) available to every template."""
    app.jinja_env.globals["rules_script"] = rules_script
    app.jinja_env.globals["violation_wording"] = wording.violation_wording
    app.jinja_env.globals["termination_sentence"] = wording.termination_sentence
    app.jinja_env.globals["liveness_wording"] = lambda audience: wording.liveness_wording(server_vision_config(),
                                                                                        audience=audience)
