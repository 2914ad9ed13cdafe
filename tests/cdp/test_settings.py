"""Settings come from the environment; production settings pass Django's deploy checks."""

import subprocess
import sys

import pytest
from django.db import connection

from tests.conftest import REPO

PRODUCTION_ENV = {
    "PATH": "/usr/bin:/bin",
    "DJANGO_SETTINGS_MODULE": "cdp.settings",
    "DEBUG": "false",
    "SECRET_KEY": "k9#2vQ!x7Lw0@pZr4%tY8^uB1&nM6*cE3(gH5)jK-sD_fA+oI=eW[qR]lT{zX}yU",
    "CONSENT_HASH_SALT": "pV3$wq9!Zr7#Lx2@Nc8%Tb5^Hm1&Jd4*",
    "ALLOWED_HOSTS": "cdp.example.com",
    "DATABASE_URL": "postgres://cdp@db.example.com:5432/cdp",
    "REDIS_URL": "redis://redis.example.com:6379/0",
    "CDP_STATE_DIR": "/nonexistent",
}


def manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def test_check_deploy_is_clean_in_production():
    done = manage(PRODUCTION_ENV, "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_missing_secret_key_in_production_is_a_clear_error():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "SECRET_KEY"}
    done = manage(env, "check")
    assert done.returncode != 0
    assert "SECRET_KEY is required when DEBUG is false" in done.stderr


def test_missing_consent_hash_salt_in_production_is_a_clear_error():
    # a SECRET_KEY fallback would void every suppression hash at the next key rotation
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "CONSENT_HASH_SALT"}
    done = manage(env, "check")
    assert done.returncode != 0
    assert "CONSENT_HASH_SALT is required when DEBUG is false" in done.stderr


def test_sqlite_is_refused():
    done = manage({**PRODUCTION_ENV, "DATABASE_URL": "sqlite:///db.sqlite3"}, "check")
    assert done.returncode != 0
    assert "DATABASE_URL must point at PostgreSQL" in done.stderr


@pytest.mark.django_db
def test_connections_carry_the_statement_timeout_and_come_from_a_pool():
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "30s"
    assert connection.pool is not None


@pytest.mark.django_db
def test_connections_carry_the_process_kinds_application_name(settings):
    # the test run's own processes use the default; the Procfile's lines name theirs (cdp-web…)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('application_name')")
        assert cursor.fetchone()[0] == settings.DB_APPLICATION_NAME == "cdp"
    procfile = (REPO / "Procfile").read_text().splitlines()
    named = dict(line.split(": DB_APPLICATION_NAME=", 1) for line in procfile if line.strip())
    assert {kind: command.split()[0] for kind, command in named.items()} == {
        "web": "cdp-web",
        "worker": "cdp-worker",
        "beat": "cdp-beat",
        "rqworker": "cdp-rqworker",
    }


def test_the_database_url_can_name_the_connections_itself():
    done = manage(
        {**PRODUCTION_ENV, "DATABASE_URL": PRODUCTION_ENV["DATABASE_URL"] + "?application_name=shop-cdp"},
        "shell",
        "-c",
        "from django.conf import settings; print(settings.DATABASES['default']['OPTIONS']['application_name'])",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "shop-cdp"
