"""Recommendation quality under protocol R, in a scratch database.

    python benchmarks/recommendations_quality.py [FILE] [evaluate_recommendations flags...]

A scratch database ``cdp_bench_recs_quality`` (dropped at the end unless ``--keep``) is created on
the server of DATABASE_URL and migrated; then ``manage.py evaluate_recommendations`` runs in a new
process (import through profiles' importer, extraction, training, evaluation; every protocol
baseline in the same run, and the hybrid's ratio to the best of them). Prints the command's table,
the wall-clock seconds of the whole command, and saves its JSON next to nothing (stdout).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FILE = REPO.parent / "shared" / "datasets" / "online_retail" / "online_retail.csv.gz"
NAME = os.environ.get("RECS_QUALITY_DATABASE", "cdp_bench_recs_quality")  # a private name when several run
sys.path.insert(0, str(REPO))


def _server_url() -> str:
    from cdp.envfiles import load_env_files

    load_env_files()
    return os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cdp")


def _recreate(admin_url: str, *, create: bool) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(NAME)))
        if create:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(NAME)))


def main(argv: list[str]) -> None:
    keep = "--keep" in argv
    args = [a for a in argv if a != "--keep"]
    path = args[0] if args and not args[0].startswith("-") else str(DEFAULT_FILE)
    flags = args[1:] if args and not args[0].startswith("-") else args
    server = _server_url()
    admin = urlunsplit(urlsplit(server)._replace(path="/postgres"))
    url = urlunsplit(urlsplit(server)._replace(path=f"/{NAME}"))
    env = {**os.environ, "DATABASE_URL": url, "DEBUG": "true", "OPENBLAS_NUM_THREADS": "1"}
    _recreate(admin, create=True)
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "manage.py", "evaluate_recommendations", path, "--no-progress", *flags],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        sys.stderr.write(proc.stderr)
        if proc.returncode != 0:
            raise SystemExit(f"evaluate_recommendations failed with exit code {proc.returncode}")
        sys.stdout.write(proc.stdout + "\n")
        sys.stderr.write(
            f"evaluate_recommendations end to end (new process): {seconds:.1f} s; load {os.getloadavg()}\n"
        )
    finally:
        if not keep:
            _recreate(admin, create=False)


if __name__ == "__main__":
    main(sys.argv[1:])
