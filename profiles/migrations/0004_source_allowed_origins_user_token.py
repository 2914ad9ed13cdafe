import secrets

import django.contrib.postgres.fields
from django.db import migrations, models


def give_existing_sources_a_user_token_secret(apps, schema_editor):
    Source = apps.get_model("profiles", "Source")
    for source in Source.objects.filter(user_token_secret=""):
        source.user_token_secret = "uts_" + secrets.token_urlsafe(32)
        source.save(update_fields=["user_token_secret"])


class Migration(migrations.Migration):
    dependencies = [
        ("profiles", "0003_matching_run"),
    ]

    operations = [
        migrations.AddField(
            model_name="source",
            name="allowed_origins",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.CharField(max_length=255), blank=True, default=list, size=None
            ),
        ),
        migrations.AddField(
            model_name="source",
            name="user_token_secret",
            field=models.CharField(blank=True, default="", editable=False, max_length=64),
        ),
        migrations.RunPython(give_existing_sources_a_user_token_secret, migrations.RunPython.noop),
    ]
