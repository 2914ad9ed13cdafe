# The identifiers table's profile index duplicated the (profile, kind) index's first column; every
# identifier created, and every one a merge moves, wrote it (decision 0067).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("profiles", "0011_event_source_without_own_index"),
    ]

    operations = [
        migrations.AlterField(
            model_name="identifier",
            name="profile",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="identifiers",
                to="profiles.profile",
            ),
        ),
    ]
