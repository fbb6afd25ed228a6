"""Entry point: `python app.py` serves the proctoring platform (127.0.0.1:5001 by default).

Also the Flask CLI target: `flask --app app create-user ...`, `seed-demo`, `dump-schema`, `init-db`.
"""
import os
import sys

# Eventlet (the product's default server) must patch the standard library before anything
# else imports it. Only the server run patches; the CLI and tests import this module unpatched.
if __name__ == "__main__" and os.environ.get("PROCTOR_ASYNC_MODE", "eventlet") == "eventlet":
    import eventlet

    eventlet.monkey_patch()

from proctor import ConfigError, create_app, init_db, start_live  # noqa: E402
from proctor.extensions import socketio  # noqa: E402


def main() -> int:
    try:
        application = create_app()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    init_db(application)
    start_live(application)  # workers warm while the server comes up
    host, port = application.config["PROCTOR_HOST"], application.config["PROCTOR_PORT"]
    application.logger.info("serving on http://%s:%s (%s)", host, port, application.config["PROCTOR_ASYNC_MODE"])
    socketio.run(application, host=host, port=port, allow_unsafe_werkzeug=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
elif __name__ != "__mp_main__":  # spawned worker processes import this file too; they need no app
    try:
        app = create_app()
    except ConfigError as exc:  # the flask CLI shows this message instead of a traceback
        raise SystemExit(f"configuration error: {exc}") from None
