# Blocking keys per live profile, so an incremental matching run reads its candidates by index
# instead of every live profile (decision 0065). Filled by the next run that reads every profile.

import django.contrib.postgres.fields
import django.contrib.postgres.indexes
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("profiles", "0011_event_source_without_own_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="BlockingKeys",
            fields=[
                (
                    "profile",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="profiles.profile",
                    ),
                ),
                ("stamp", models.DateTimeField()),
                ("keys", django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), size=None)),
                ("first", models.TextField()),
                ("last", models.TextField()),
                ("dob", models.TextField()),
                ("postal", models.TextField()),
                ("city", models.TextField()),
                ("last_code", models.TextField()),
                ("first_key", models.TextField()),
                ("sort_key", models.TextField()),
            ],
            options={
                "indexes": [
                    django.contrib.postgres.indexes.GinIndex(fields=["keys"], name="blocking_keys_gin"),
                    models.Index(condition=models.Q(("city", "")), fields=["postal"], name="blocking_keys_no_city"),
                ],
            },
        ),
    ]
