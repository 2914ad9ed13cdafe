"""Keys are stored hashed, printed once by the commands, shown once in admin."""

import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model

from cdp.keys import key_hash
from cdp.models import ApiKey
from profiles.models import Source
from tests.conftest import REPO, worker_env

pytestmark = pytest.mark.django_db(transaction=True)


def run_manage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=worker_env(), capture_output=True, text=True, timeout=60
    )


def test_create_source_prints_the_write_key_alone_on_the_last_line(api_client):
    done = run_manage("create_source", "storefront")
    assert done.returncode == 0, done.stderr
    raw = done.stdout.strip().splitlines()[-1]
    assert raw.startswith("wk_") and " " not in raw
    source = Source.objects.get(name="storefront")
    assert source.write_key_hash == key_hash(raw)
    assert raw not in {source.write_key_prefix, source.write_key_hash}


def test_create_api_key_prints_the_secret_key_alone_on_the_last_line(api_client):
    done = run_manage("create_api_key", "reporting")
    assert done.returncode == 0, done.stderr
    raw = done.stdout.strip().splitlines()[-1]
    assert raw.startswith("sk_")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api_client.get("/api/v1/sources/").status_code == 200


def test_create_source_twice_is_a_clear_error_not_a_traceback():
    assert run_manage("create_source", "shop").returncode == 0
    done = run_manage("create_source", "shop")
    assert done.returncode == 1
    assert "A source named 'shop' already exists." in done.stderr
    assert "Traceback" not in done.stderr


def test_admin_creates_a_source_and_shows_its_key_once(client):
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    response = client.post("/admin/profiles/source/add/", {"name": "app", "is_active": "on"}, follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"] if "wk_" in str(m)]
    assert len(shown) == 1
    raw = shown[0].rsplit(" ", 1)[-1]
    assert Source.objects.get(name="app").write_key_hash == key_hash(raw)
    assert raw not in client.get("/admin/profiles/source/").content.decode()


def test_admin_creates_a_secret_key_and_revokes_it(client):
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    response = client.post("/admin/cdp/apikey/add/", {"name": "bi"}, follow=True)
    raw = next(str(m) for m in response.context["messages"] if "sk_" in str(m)).rsplit(" ", 1)[-1]
    key = ApiKey.objects.get(name="bi")
    assert key.key_hash == key_hash(raw)
    client.post("/admin/cdp/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is not None


@pytest.mark.django_db
def test_rotation_and_revocation_take_effect_within_the_key_cache_time(settings, api_client):
    # given keys looked up (and cached) by this process, with a 1 s key cache
    import base64
    import time

    from cdp.services import api_key_create, api_key_revoke
    from profiles.services import source_create, source_rotate_write_key

    settings.API_KEY_CACHE_SECONDS = 1
    key, secret = api_key_create(name="rotating")
    source, old = source_create(name="rotating")
    basic = "Basic " + base64.b64encode(f"{old}:".encode()).decode()
    track = {"userId": "u1", "event": "e"}
    assert api_client.get("/api/v1/sources/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    assert api_client.post("/v1/track", track, format="json", HTTP_AUTHORIZATION=basic).status_code == 200
    # when the write key is rotated and the secret key revoked
    _, new = source_rotate_write_key(source=source)
    api_key_revoke(key=key)
    # then the new write key works at once, and after the cache time both old keys are refused
    fresh = "Basic " + base64.b64encode(f"{new}:".encode()).decode()
    assert api_client.post("/v1/track", track, format="json", HTTP_AUTHORIZATION=fresh).status_code == 200
    time.sleep(1.1)
    assert api_client.get("/api/v1/sources/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 401
    assert api_client.post("/v1/track", track, format="json", HTTP_AUTHORIZATION=basic).status_code == 401
