"""Every registered model has a working admin list and add page; admin login works."""

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model

pytestmark = pytest.mark.django_db

CDP_APPS = {"cdp", "profiles", "consent", "segments", "recommendations"}


def test_the_four_apps_and_the_platform_are_installed():
    from django.apps import apps

    assert {config.label for config in apps.get_app_configs()} >= CDP_APPS


def test_admin_login_with_password(client):
    get_user_model().objects.create_superuser("admin", "admin@example.com", "s3cret-pass")
    response = client.post("/admin/login/?next=/admin/", {"username": "admin", "password": "s3cret-pass"}, follow=True)
    assert response.status_code == 200
    assert response.context["user"].is_superuser


def test_every_cdp_model_admin_lists_and_adds(admin_client):
    models = [m for m in admin.site._registry if m._meta.app_label in CDP_APPS]
    assert models, "no cdp model registered in admin"
    for model in models:
        opts = model._meta
        for page in ("changelist", "add"):
            url = f"/admin/{opts.app_label}/{opts.model_name}/" + ("" if page == "changelist" else "add/")
            response = admin_client.get(url)
            assert response.status_code in (200, 403), f"{url}: {response.status_code}"
