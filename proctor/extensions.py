"""Extensions, created unbound and bound to the app in create_app()."""
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_socketio import SocketIO
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData

# Stable constraint names, so that migrations and examproctordb.sql agree on every database.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}



class VersionedLoginManager(LoginManager):
    """Flask-Login whose ids are "<account id>:<session version>" (User.get_id).

    The app's user_loader still loads by the numeric id; the wrapper here accepts the account only
    if its current id string equals the one in the session or remember cookie, so raising the
    account's session version (password change, logout) ends every earlier session and cookie.
    """

    def user_loader(self, callback):
        def load_versioned(user_id: str):
            account_id, sep, _version = str(user_id).partition(":")
            if not sep or not account_id.isdigit():
                return None  # an id without a version (older cookie): sign in again
            user = callback(account_id)
            return user if user is not None and user.get_id() == user_id else None

        return super().user_loader(load_versioned)


db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING))
migrate = Migrate()
login_manager = VersionedLoginManager()
csrf = CSRFProtect()
# The client address is request.remote_addr; X-Forwarded-For counts only when
# PROCTOR_PROXY_COUNT tells ProxyFix how many proxies to trust.
limiter = Limiter(key_func=get_remote_address, default_limits=[])
socketio = SocketIO()


def _enforce_sqlite_foreign_keys() -> None:
    """SQLite ignores foreign keys (and so ON DELETE CASCADE) unless each connection asks for them."""
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _on_connect(dbapi_connection, _record):
        if isinstance(dbapi_connection, sqlite3.Connection):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()


_enforce_sqlite_foreign_keys()
