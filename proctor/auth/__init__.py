"""Accounts in the browser: signup, login, logout, forgot and reset password."""
from flask import Blueprint

bp = Blueprint("auth", __name__)

from . import routes  # noqa: E402,F401  (views on bp)
from .routes import home_for  # noqa: E402,F401
