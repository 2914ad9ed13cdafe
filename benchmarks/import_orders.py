#!/usr/bin/env python
"""Benchmark: ``manage.py import_orders`` on a full order history vs a raw PostgreSQL COPY of it.

    python benchmarks/import_orders.py [FILE] [--database cdp_bench_import] [--keep]

FILE defaults to the shared UCI Online Retail file. A fresh database (dropped first, dropped again
at the end unless ``--keep``) is created on the server of DATABASE_URL (or ``.cdp/env``, as the
settings read it) and migrated; then, in this one run:

1. ``manage.py import_orders FILE`` in a new process, timed end to end (Python start-up, reading,
   cleaning, the database write and the computed traits of every imported profile);
2. the same command again (everything is already there: the idempotent re-run);
3. the baseline: the same cleaned order lines (``read_order_lines``, the importer's own reader)
   written with a raw ``COPY`` into a plain table without indexes; reading and COPY timed apart.

Prints a markdown table and the machine, for ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FILE = REPO.parent / "shared" / "datasets" / "online_retail" / "online_retail.csv.gz"
sys.path.insert(0, str(REPO))


def _server_url() -> str:
    from cdp.envfiles import load_env_files

    load_env_files()
    return os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cdp")


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _recreate(admin_url: str, name: str, *, create: bool) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if create:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _manage(env: dict, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"manage.py {' '.join(args)} failed with exit code {proc.returncode}")
    return seconds, proc


def _summary(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("import_orders:")]
    return lines[-1] if lines else ""


def _baseline(path: str, url: str) -> dict:
    """Read + clean with the importer's reader, then raw COPY of those lines into a plain table."""
    import django
    import psycopg

    django.setup()
    from profiles.bulk import CleaningStats, read_order_lines

    stats = CleaningStats()
    started = time.perf_counter()
    lines = list(read_order_lines(path, stats=stats))
    read_seconds = time.perf_counter() - started
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE bench_order_lines (customer text, item text, quantity numeric, occurred_at timestamptz, "
            "order_id text, price numeric, description text)"
        )
        conn.commit()
        started = time.perf_counter()
        columns = "customer, item, quantity, occurred_at, order_id, price, description"
        with conn.cursor() as cursor, cursor.copy(f"COPY bench_order_lines ({columns}) FROM STDIN") as copy:
            for line in lines:
                copy.write_row(line)  # OrderLine fields are in the column order above
        conn.commit()
        copy_seconds = time.perf_counter() - started
        conn.execute("DROP TABLE bench_order_lines")
        conn.commit()
    return {"lines": len(lines), "rows_read": stats.rows_read, "read": read_seconds, "copy": copy_seconds}


def _machine(url: str) -> dict:
    import psycopg

    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    match = re.search(r"MemTotal:\s+(\d+) kB", meminfo)
    memory = f"{int(match.group(1)) / 1024 / 1024:.0f} GiB" if match else "?"
    return {
        "cpus": os.cpu_count(),
        "memory": memory,
        "postgres": version,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", nargs="?", default=str(DEFAULT_FILE))
    parser.add_argument("--database", default="cdp_bench_import", help="scratch database (dropped and created)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database afterwards")
    args = parser.parse_args()
    path = str(Path(args.file).resolve())
    if not Path(path).is_file():
        raise SystemExit(f"No such file: {path}")

    server = _server_url()
    bench_url = _with_database(server, args.database)
    admin_url = _with_database(server, "postgres")
    env = {**os.environ, "DATABASE_URL": bench_url, "DJANGO_SETTINGS_MODULE": "cdp.settings", "DEBUG": "true"}
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "DEBUG")})

    _recreate(admin_url, args.database, create=True)
    try:
        _manage(env, "migrate", "--noinput", "-v", "0")
        import_seconds, first = _manage(env, "import_orders", path, "--no-progress")
        rerun_seconds, again = _manage(env, "import_orders", path, "--no-progress")
        import psycopg

        with psycopg.connect(bench_url) as conn:
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM profiles_profile), (SELECT count(*) FROM profiles_identifier), "
                "(SELECT count(*) FROM profiles_event), "
                "(SELECT count(*) FROM profiles_profile WHERE computed_at IS NOT NULL)"
            ).fetchone()
        base = _baseline(path, bench_url)
        machine = _machine(bench_url)
    finally:
        if not args.keep:
            _recreate(admin_url, args.database, create=False)

    n = base["lines"]
    service = re.search(r"; ([\d.]+) s$", _summary(first.stderr))
    raw = base["copy"]
    floor = base["read"] + base["copy"]

    def row(label: str, seconds: float) -> str:
        return f"| {label} | {seconds:.2f} | {n / seconds:,.0f} | {seconds / raw:.1f} | {seconds / floor:.2f} |"

    print(f"File: {path}")
    print(f"{base['rows_read']:,} rows read, {n:,} order lines after cleaning.")
    print(
        f"After import: {counts[0]:,} profiles, {counts[1]:,} identifiers, {counts[2]:,} events, "
        f"{counts[3]:,} profiles with computed traits."
    )
    print()
    print("| path | seconds | order lines/s | x raw COPY | x (read + clean + raw COPY) |")
    print("|---|---:|---:|---:|---:|")
    print(row("baseline: raw `COPY` of the cleaned lines into a plain table", raw))
    print(row("baseline: read + clean (`read_order_lines`), then raw `COPY`", floor))
    print(row("`manage.py import_orders` end to end (new process, incl. computed traits)", import_seconds))
    if service:
        print(row("... of which `orders_import` (its own summary)", float(service.group(1))))
    print(row("`manage.py import_orders` again (all orders already stored)", rerun_seconds))
    print()
    print(f"read + clean alone: {base['read']:.2f} s")
    print(f"summary (first run): {_summary(first.stderr)}")
    print(f"summary (re-run):    {_summary(again.stderr)}")
    print(
        f"Machine: {machine['cpus']} CPUs, {machine['memory']} RAM, PostgreSQL {machine['postgres']}, "
        f"Python {machine['python']}, {machine['platform']}"
    )


if __name__ == "__main__":
    main()
