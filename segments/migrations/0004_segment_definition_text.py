"""Keep the definition's text as typed: jsonb reorders keys, the admin's JSON view shows them as typed."""

import json

from django.db import migrations, models


def fill_text(apps, schema_editor):
    Segment = apps.get_model("segments", "Segment")
    for segment in Segment.objects.exclude(definition=None).only("pk", "definition"):
        text = json.dumps(segment.definition, indent=2, ensure_ascii=False)
        Segment.objects.filter(pk=segment.pk).update(definition_text=text)


class Migration(migrations.Migration):
    dependencies = [("segments", "0003_jsonb_ts_parallel_safe")]

    operations = [
        migrations.AddField(
            model_name="segment",
            name="definition_text",
            field=models.TextField(
                blank=True,
                default="",
                help_text="the definition as it was typed (jsonb reorders keys); shown when it still parses to definition",
            ),
        ),
        migrations.RunPython(fill_text, migrations.RunPython.noop),
    ]
