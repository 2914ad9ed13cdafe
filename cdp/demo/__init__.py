"""`make demo`: prepare the database and run every process in the foreground (Procfile via honcho).

Run under ``python -m cdp.devservices run`` (the Makefile does), so PostgreSQL and Redis are up
and stopped again afterwards. Ctrl-C stops all processes.
"""

from __future__ import annotations

import os
import subprocess
import sys

from cdp.envfiles import BASE_DIR


def manage(*args: str, capture: bool = False) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return result.stdout or ""


def main() -> int:
    os.environ.setdefault("DEBUG", "true")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
    manage("migrate", "--noinput", "-v", "1")
    manage("collectstatic", "--noinput", "-v", "0")
    credentials = manage("ensure_admin", capture=True)
    for step in demo_data_steps():
        manage(*step)
    port = os.environ.get("PORT", "8000")
    base = f"http://127.0.0.1:{port}"
    storefront_port = os.environ.get("STOREFRONT_PORT", str(int(port) + 1))
    print("\n" + "=" * 72)
    print("cdp demo is starting: web (gunicorn), celery worker, celery beat, rq worker, demo storefront")
    print(f"  storefront: http://127.0.0.1:{storefront_port}/  (a shop on another origin: browse, log in, buy)")
    print(f"  admin:     {base}/admin/")
    print(credentials.rstrip().replace("admin user", "  username ").replace("admin password", "  password "))
    print(f"  API docs:  {base}/api/docs/")
    print(f"  health:    {base}/readyz")
    print("Press Ctrl-C to stop everything.")
    print("=" * 72 + "\n", flush=True)
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    honcho = subprocess.Popen(honcho_command(port), env=env)
    storefront_env = {**env, "DB_APPLICATION_NAME": "cdp-demo-storefront"}  # its connections, in pg_stat_activity
    storefront = subprocess.Popen(storefront_command(port, storefront_port), env=storefront_env, cwd=BASE_DIR)
    try:
        return honcho.wait()
    except KeyboardInterrupt:  # honcho gets the same SIGINT and stops its processes
        return honcho.wait()
    finally:
        storefront.terminate()
        storefront.wait(timeout=10)


def storefront_command(port: str, storefront_port: str) -> list[str]:
    """The demo shop (cdp/demo/storefront.py) on its own port: a second origin, so CORS is real."""
    return [
        sys.executable,
        "-m",
        "cdp.demo.storefront",
        "--port",
        storefront_port,
        "--cdp",
        f"http://127.0.0.1:{port}",
    ]


def honcho_command(port: str) -> list[str]:
    """honcho gives each process PORT from its base port (5000 unless told): the web must listen
    where the banner says."""
    bin_dir = os.path.dirname(sys.executable)
    procfile = BASE_DIR / "Procfile"
    return [os.path.join(bin_dir, "honcho"), "-f", str(procfile), "-d", str(BASE_DIR), "start", "-p", port]


def demo_data_steps() -> list[tuple[str, ...]]:
    """Management commands that load demo data; each capability adds its own step here."""
    # ~47k events through real ingestion: about 40 s on a fresh database; a re-run adds nothing (about 15 s)
    steps: list[tuple[str, ...]] = [("generate_demo_store", "--customers", "500", "--days", "60", "--seed", "42")]
    # then each app's own demo command, in layer order, once the app has one (idempotent re-runs)
    for app in ("consent", "segments", "recommendations"):
        if (BASE_DIR / app / "management" / "commands" / f"demo_{app}.py").exists():
            steps.append((f"demo_{app}",))
    return steps
