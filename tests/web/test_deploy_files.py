"""The container files (Dockerfile, docker-compose.yml, .dockerignore) against the code they deploy.

No container engine runs on the project's machines, so nothing here builds an image: these tests
hold the files to the repository's own facts. The services exist; web and worker run exactly the
README's scripts (which exist and are executable); every app variable the compose file sets is a
row of proctor/settings.py (or a vision setting of config_vision.py); web and worker agree on the
broker; the health checks exist and the web's asks /api/health; the image is set up by
scripts/setup.sh and not by a recipe of its own; no secret is written into either file.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import config_vision
from proctor import settings

try:
    import yaml
except ImportError:  # PyYAML belongs in requirements-dev.txt
    yaml = None

ROOT = settings.REPO_ROOT
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# Names the app reads (the settings table's), checked whatever their prefix.
APP_NAMES = re.compile(r"^(PROCTOR_\w+|DATABASE_URL|FLASK_SECRET_KEY|RATELIMIT_STORAGE_URI|MYSQL_\w+)$")
# A value that is only a compose substitution with no default: ${NAME} or ${NAME:?message} / ${NAME?message}.
REQUIRED_SUBST = re.compile(r"^\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?\?[^}]*)?\}$")
SUBST = re.compile(r"\$\{[^}]+\}")
# What scripts/setup.sh does itself; the Dockerfile must call setup.sh, not repeat these.
OWN_RECIPE = re.compile(r"pip3?\s+install|npm\s+(ci|install)|download_yolo_models|init-db|install_static|python3?\s+-m\s+venv")


@pytest.fixture(scope="module")
def compose() -> dict:
    if yaml is None:
        pytest.fail("PyYAML is not installed: add PyYAML to requirements-dev.txt (these tests parse docker-compose.yml)")
    assert COMPOSE.is_file(), "docker-compose.yml is missing"
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), "docker-compose.yml has no services"
    return data


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    assert DOCKERFILE.is_file(), "Dockerfile is missing"
    out, buf = [], ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    assert not buf, "Dockerfile ends inside a continued line"
    return out


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the "NAME=value" form
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {str(k): ("" if v is None else str(v)) for k, v in env.items()}


def _argv(command) -> list[str]:
    if command is None:
        return []
    return list(map(str, command)) if isinstance(command, list) else shlex.split(str(command))


def _dockerignore() -> list[str]:
    assert DOCKERIGNORE.is_file(), ".dockerignore is missing"
    lines = (line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _known_names() -> set[str]:
    names = set(settings.BY_NAME)
    names |= {config_vision.ENV_PREFIX + s.name for s in config_vision.SETTINGS}
    names.add(config_vision.SETTINGS_FILE_ENV)
    return names


def _exec_form(args: str) -> list[str]:
    import json

    try:
        value = json.loads(args)
    except ValueError:
        return shlex.split(args)
    return [str(v) for v in value] if isinstance(value, list) else shlex.split(str(value))


# ------------------------------------------------------------------------------ services

def test_services_exist(compose):
    assert {"web", "worker", "redis", "mariadb"} <= set(compose["services"])
    assert str(compose["services"]["redis"]["image"]).split(":")[0] == "redis"
    assert str(compose["services"]["redis"]["image"]).split(":")[1].startswith("7")
    assert compose["services"]["mariadb"]["image"] == "mariadb:10.11"


@pytest.mark.parametrize("service, script", [("web", "scripts/start"), ("worker", "scripts/worker")])
def test_commands_are_the_repository_scripts(compose, service, script):
    argv = _argv(compose["services"][service].get("command"))
    assert argv == [script], f"{service} must run exactly {script} (the README's command), not {argv}"
    path = ROOT / script
    assert path.is_file(), f"{script} does not exist"
    assert path.stat().st_mode & 0o111, f"{script} is not executable"


def test_web_script_serves_app_py_and_worker_script_runs_celery():
    # The scripts the services name are the ones that do the work (not wrappers of something else).
    start = (ROOT / "scripts/start").read_text(encoding="utf-8")
    assert "scripts/setup.sh" in start and re.search(r"^exec \.venv/bin/python app\.py\s*$", start, re.M)
    worker = (ROOT / "scripts/worker").read_text(encoding="utf-8")
    assert re.search(r"\.venv/bin/celery -A proctor\.tasks worker", worker)


def test_web_and_worker_use_the_same_image(compose):
    web, worker = compose["services"]["web"], compose["services"]["worker"]
    assert web.get("image") and web.get("image") == worker.get("image")
    assert web.get("build"), "web builds the image from this repository"
    context = web["build"]["context"] if isinstance(web["build"], dict) else web["build"]
    assert (COMPOSE.parent / context / "Dockerfile").resolve() == DOCKERFILE.resolve()


def test_worker_replicas_are_set(compose):
    replicas = (compose["services"]["worker"].get("deploy") or {}).get("replicas")
    assert isinstance(replicas, int) and replicas >= 1


# ------------------------------------------------------------------------------ environment

@pytest.mark.parametrize("service", ["web", "worker"])
def test_app_variables_are_known_settings(compose, service):
    env = _env(compose["services"][service])
    app_vars = [name for name in env if APP_NAMES.match(name)]
    assert app_vars, f"{service} sets no app variable"
    unknown = sorted(set(app_vars) - _known_names())
    assert not unknown, f"{service} sets variables that proctor/settings.py does not read: {unknown}"


@pytest.mark.parametrize("service", ["web", "worker"])
def test_literal_values_pass_the_settings_checks(compose, service):
    """A literal (not substituted) value must be one the app accepts at start."""
    env = _env(compose["services"][service])
    for name, value in env.items():
        if name in settings.BY_NAME and not SUBST.search(value):
            settings.parse(settings.BY_NAME[name], value)
    if env.get("PROCTOR_BROKER_URL"):
        from proctor.live.broker import check_broker_url, check_namespace

        check_broker_url(env["PROCTOR_BROKER_URL"])
        check_namespace(env.get("PROCTOR_BROKER_NAMESPACE", "proctor"))


def test_web_and_worker_share_the_broker(compose):
    web, worker = _env(compose["services"]["web"]), _env(compose["services"]["worker"])
    assert web.get("PROCTOR_BROKER_URL"), "web must run the distributed mode (PROCTOR_BROKER_URL)"
    assert urlsplit(web["PROCTOR_BROKER_URL"]).hostname == "redis"
    assert worker.get("PROCTOR_BROKER_URL") == web["PROCTOR_BROKER_URL"]
    assert worker.get("PROCTOR_BROKER_NAMESPACE", "proctor") == web.get("PROCTOR_BROKER_NAMESPACE", "proctor")
    limit = urlsplit(web.get("RATELIMIT_STORAGE_URI", ""))
    assert limit.scheme == "redis" and limit.hostname == "redis", "rate limits must be shared in the same Redis"


def test_web_database_is_the_mariadb_service(compose):
    web = _env(compose["services"]["web"])
    if web.get("DATABASE_URL"):
        url = urlsplit(web["DATABASE_URL"])
        assert url.scheme in ("mysql+pymysql", "mysql", "mariadb") and url.hostname == "mariadb"
    else:
        assert web.get("MYSQL_HOST") == "mariadb"
    maria = _env(compose["services"]["mariadb"])
    assert maria.get("MARIADB_DATABASE") == web.get("MYSQL_DB", settings.BY_NAME["MYSQL_DB"].default)
    assert maria.get("MARIADB_USER") == web.get("MYSQL_USER", settings.BY_NAME["MYSQL_USER"].default)
    assert maria.get("MARIADB_PASSWORD") == web.get("MYSQL_PASSWORD"), "the app's and MariaDB's passwords differ"


def test_web_listens_on_all_addresses_and_keeps_data_in_a_volume(compose):
    web = compose["services"]["web"]
    env = _env(web)
    assert env.get("PROCTOR_HOST") == "0.0.0.0"
    data_dir = env.get("PROCTOR_DATA_DIR")
    assert data_dir, "web must set PROCTOR_DATA_DIR"
    mounts = {}  # target -> source, short ("source:target[:mode]") or long syntax
    for vol in web.get("volumes") or []:
        if isinstance(vol, dict):
            mounts[vol.get("target")] = vol.get("source")
        else:
            source, target = str(vol).split(":")[:2]
            mounts[target] = source
    assert data_dir in mounts, f"no volume on PROCTOR_DATA_DIR={data_dir}"
    assert mounts[data_dir] in (compose.get("volumes") or {}), "PROCTOR_DATA_DIR's volume must be a named volume"
    maria_mounts = [str(v) for v in compose["services"]["mariadb"].get("volumes") or []]
    assert any(v.endswith(":/var/lib/mysql") and v.split(":")[0] in (compose.get("volumes") or {}) for v in maria_mounts)


# ------------------------------------------------------------------------------ health and order

@pytest.mark.parametrize("service", ["web", "worker", "redis", "mariadb"])
def test_healthchecks_present(compose, service):
    check = compose["services"][service].get("healthcheck")
    assert check and not check.get("disable"), f"{service} has no healthcheck"
    assert _argv(check.get("test"))[0] in ("CMD", "CMD-SHELL")


def test_health_check_commands(compose, dockerfile):
    services = compose["services"]
    assert _argv(services["redis"]["healthcheck"]["test"])[1:] == ["redis-cli", "ping"]
    assert "/api/health" in " ".join(_argv(services["web"]["healthcheck"]["test"]))
    routes = (ROOT / "tests/web/routes.txt").read_text(encoding="utf-8")
    assert re.search(r"^GET /api/health$", routes, re.M), "the app no longer serves /api/health"
    checks = [args for word, args in dockerfile if word == "HEALTHCHECK"]
    assert len(checks) == 1 and "/api/health" in checks[0]
    # The worker's check looks for the heartbeat key proctor/tasks.py writes (<ns>:worker:<node>@<host>).
    from proctor.live.broker import worker_key

    worker_check = " ".join(_argv(services["worker"]["healthcheck"]["test"]))
    assert worker_key("", "*@") in worker_check and "socket.gethostname()" in worker_check


def test_web_waits_for_healthy_redis_and_mariadb(compose):
    for service, needs in (("web", {"redis", "mariadb"}), ("worker", {"redis"})):
        deps = compose["services"][service].get("depends_on")
        assert isinstance(deps, dict), f"{service}: depends_on must name conditions"
        for dep in needs:
            assert (deps.get(dep) or {}).get("condition") == "service_healthy", f"{service} must wait for a healthy {dep}"


# ------------------------------------------------------------------------------ secrets

def _secret_names() -> set[str]:
    names = {s.name for s in settings.SETTINGS if s.secret}
    return names | {"MARIADB_PASSWORD", "MARIADB_ROOT_PASSWORD", "MYSQL_ROOT_PASSWORD"}


def test_no_secret_is_hard_coded_in_compose(compose):
    assert settings.BY_NAME["FLASK_SECRET_KEY"].secret and settings.BY_NAME["MYSQL_PASSWORD"].secret
    web = _env(compose["services"]["web"])
    match = REQUIRED_SUBST.match(web.get("FLASK_SECRET_KEY", ""))
    assert match, "web's FLASK_SECRET_KEY must come from ${FLASK_SECRET_KEY...} with no default value"
    for name, service in compose["services"].items():
        for var, value in _env(service).items():
            if var not in _secret_names() and not re.search(r"PASSWORD|SECRET", var):
                continue
            if REQUIRED_SUBST.match(value):
                continue
            # A URL may be literal when it carries no password (redis://redis:6379/0).
            parts = urlsplit(value)
            assert parts.scheme and "://" in value, f"{name}: {var} is a hard-coded secret"
            assert parts.password is None or REQUIRED_SUBST.match(parts.password), \
                f"{name}: {var} holds a hard-coded password"


def test_no_secret_in_the_dockerfile(dockerfile):
    for word, args in dockerfile:
        if word in ("ENV", "ARG"):
            assert not re.search(r"SECRET|PASSWORD|DATABASE_URL", args, re.I), f"{word} {args}: secrets come at run time"
    ignored = _dockerignore()
    assert ".env" in ignored and "instance" in ignored, ".env and instance/ (secret_key) must stay out of the image"


# ------------------------------------------------------------------------------ the image

def test_dockerfile_uses_the_readme_setup(dockerfile):
    froms = [args for word, args in dockerfile if word == "FROM"]
    assert any(re.match(r"python:3\.11-slim\b", f) for f in froms), froms
    runs = [args for word, args in dockerfile if word == "RUN"]
    setup = [r for r in runs if re.search(r"(^|\s)scripts/setup\.sh(\s|$|;|&)", r)]
    assert len(setup) == 1, "exactly one RUN line runs scripts/setup.sh"
    for run in runs:
        assert not OWN_RECIPE.search(run), f"RUN {run!r} repeats a step of scripts/setup.sh"
    # setup.sh ends with init-db, which writes a secret key into the instance folder: keep it out.
    assert "PROCTOR_INSTANCE_PATH=" in setup[0] and "rm -rf" in setup[0]
    # The model mirror is mounted where setup.sh looks by default (../shared/models from the repository).
    mirror_default = re.search(r"PROCTOR_MODEL_MIRROR:-([^}]+)\}", (ROOT / "scripts/setup.sh").read_text(encoding="utf-8"))
    workdir = [args for word, args in dockerfile if word == "WORKDIR"][0]
    target = re.search(r"target=(\S+)", setup[0])
    assert mirror_default and target
    assert Path(target.group(1)) == (Path(workdir) / mirror_default.group(1)).resolve()


def test_dockerfile_default_command_is_scripts_start(dockerfile):
    cmds = [args for word, args in dockerfile if word == "CMD"]
    assert cmds and _exec_form(cmds[-1]) == ["scripts/start"]
    expose = [args for word, args in dockerfile if word == "EXPOSE"]
    assert expose == [str(settings.BY_NAME["PROCTOR_PORT"].default)]


def test_dockerignore_keeps_local_state_out():
    ignored = _dockerignore()
    for entry in (".venv", "node_modules", "instance", ".git", "**/__pycache__", "test-artifacts", ".env"):
        assert entry in ignored, f".dockerignore must exclude {entry}"
    assert not any(e.startswith("models") for e in ignored), "models/ must reach the build (manifest and installed models)"
