# The events table's source index duplicated the unique (source, message_id) index's first column;
# every stitched event wrote it (decision 0054).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("profiles", "0009_intake_for_the_insert"),
    ]

    operations = [
        migrations.AlterField(
            model_name="event",
            name="source",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="profiles.source",
            ),
        ),
    ]
