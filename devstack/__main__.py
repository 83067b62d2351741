"""The development stack behind `make run`.

    python -m devstack run            migrate, ensure an admin, start everything
    python -m devstack redis          only the embedded Redis, in the foreground

`run` starts the embedded Redis (devstack/embedded_redis.py) when REDIS_URL is unset, and
stops it when it ends, however it ends (the tests start their own: tests/broker.py).
`run` hands the web server, worker, beat and Flower to honcho (see Procfile); Ctrl-C stops
honcho's processes first and Redis last, so a worker finishing its current task can still
acknowledge it.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
BIN_DIR = Path(sys.executable).parent


def _settings():
    """Django settings, or exit with the configuration error in one line."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.INSTALLED_APPS  # noqa: B018 - load and validate now
    except ImproperlyConfigured as exc:
        sys.exit(f"taskyard: configuration error: {exc}")
    return settings


def _manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, check=True)


def _start_redis(data_dir: Path, *, appendonly: bool):
    from devstack import embedded_redis

    try:
        server = embedded_redis.start(data_dir, appendonly=appendonly)
    except embedded_redis.EmbeddedRedisError as exc:
        sys.exit(f"taskyard: {exc}")
    os.environ["REDIS_URL"] = server.url
    return server


def _wait_ignoring_sigint(process: subprocess.Popen) -> int:
    """Wait for ``process``; Ctrl-C reaches it directly (same process group), so here it
    must not interrupt the wait, or we would stop Redis under a worker still shutting down.
    SIGTERM sent to us is passed on."""
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    previous_term = signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    try:
        return process.wait()
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)


LOCAL_ENV = """# Written by the first `make run`: development defaults for every command run from a
# plain shell (manage.py, celery). Variables set in the environment win. Never copy this
# file to a production host.
DEBUG=1
SECRET_KEY={secret}
"""


def write_local_env(var_dir: Path) -> Path:
    """Create var/local.env (DEBUG=1, a generated SECRET_KEY) unless it exists."""
    path = var_dir / "local.env"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(LOCAL_ENV.format(secret=secrets.token_urlsafe(50)))
        path.chmod(0o600)
    return path


def run() -> int:
    os.environ.setdefault("DEBUG", "1")
    write_local_env(Path(os.environ.get("VAR_DIR", BASE_DIR / "var")))
    settings = _settings()
    redis = None
    if settings.REDIS_IS_EMBEDDED:
        redis = _start_redis(settings.EMBEDDED_REDIS_DIR, appendonly=True)
    try:
        _manage("migrate", "--noinput", "-v", "0")
        _manage("ensure_admin")
        # The demo company on a first start only: a cleared demo stays cleared.
        _manage("seed_demo", "--first-start")
        flower_auth = subprocess.run(
            [sys.executable, "manage.py", "flower", "--print-credentials"],
            cwd=BASE_DIR,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        web_port = os.environ.setdefault("WEB_PORT", "8000")
        database = settings.DATABASES["default"]
        print(
            "\nTaskyard is starting (Ctrl-C stops everything):\n"
            f"  web      http://127.0.0.1:{web_port}/\n"
            f"  admin    http://127.0.0.1:{web_port}/admin/\n"
            f"  demo     http://127.0.0.1:{web_port}/queueing/demo/\n"
            f"  flower   {settings.FLOWER_URL}  (basic auth {flower_auth})\n"
            f"  redis    {os.environ.get('REDIS_URL', settings.REDIS_URL)}"
            f"{' (embedded)' if redis else ''}\n"
            f"  database {database['ENGINE'].rsplit('.', 1)[-1]} {database['NAME']}\n"
            "  fakes    stripe :12111, twilio :12112, sendgrid :12113, airtable :12114, "
            "osrm :12115 (docs/fakes.md)\n",
            flush=True,
        )
        env = dict(os.environ, PATH=f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}")
        # The provider fakes call back to this web server, signed with the development
        # secrets the webhook endpoint expects (docs/webhooks.md).
        web = f"http://127.0.0.1:{web_port}"
        env.setdefault("FAKE_STRIPE_WEBHOOK_URL", f"{web}/webhooks/stripe/")
        env.setdefault("FAKE_SENDGRID_EVENT_WEBHOOK_URL", f"{web}/webhooks/sendgrid/")
        honcho = subprocess.Popen(
            [str(BIN_DIR / "honcho"), "start", "--procfile", "Procfile"],
            cwd=BASE_DIR,
            env=env,
        )
        code = _wait_ignoring_sigint(honcho)
        # honcho exits 130 after Ctrl-C; that is a normal stop.
        return 0 if code in (0, 130, -signal.SIGINT) else code
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    finally:
        if redis is not None:
            redis.stop()


def redis_only() -> int:
    os.environ.setdefault("DEBUG", "1")
    settings = _settings()
    if not settings.REDIS_IS_EMBEDDED:
        sys.exit(f"taskyard: REDIS_URL is set ({settings.REDIS_URL}); nothing to start")
    server = _start_redis(settings.EMBEDDED_REDIS_DIR, appendonly=True)
    if server.process is None:
        print(f"embedded redis already running at {server.url}")
        return 0
    print(f"embedded redis at {server.url} (Ctrl-C stops it)", flush=True)
    try:
        return server.process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command == "run":
        return run()
    if command == "redis":
        return redis_only()
    sys.exit("usage: python -m devstack run | redis")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
