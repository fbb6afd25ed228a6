"""Per-account request limits on the routes that cost CPU or disk.

Limits are per account, not per address: a class behind one NAT address must not share a budget.
The limit itself is an app setting (a rate such as "10 per second", see settings.py), read at
request time so tests and embedders can change it.
"""
from __future__ import annotations

from flask import current_app, request
from flask_login import current_user

from .extensions import limiter


def user_key() -> str:
    return f"user:{current_user.get_id()}" if current_user.is_authenticated else f"addr:{request.remote_addr}"


def per_user_limit(setting_name: str, methods: list[str] | None = None):
    """Decorator: the rate in app setting `setting_name`, counted per account."""
    return limiter.limit(lambda: current_app.config[setting_name], key_func=user_key, methods=methods)
