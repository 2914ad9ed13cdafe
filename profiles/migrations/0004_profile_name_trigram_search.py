"""Search profiles by name: pg_trgm and a trigram GIN index on the lower-cased name traits."""

import django.contrib.postgres.indexes
from django.contrib.postgres.operations import TrigramExtension
import django.db.models.fields.json
import django.db.models.functions.comparison
import django.db.models.functions.text
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("profiles", "0003_matching_run"),
    ]

    operations = [
        TrigramExtension(),  # pg_trgm: search profiles by any part of their name
        migrations.AddIndex(
            model_name="profile",
            index=django.contrib.postgres.indexes.GinIndex(
                django.contrib.postgres.indexes.OpClass(
                    django.db.models.functions.text.Lower(
                        django.db.models.functions.text.Concat(
                            django.db.models.functions.comparison.Coalesce(
                                django.db.models.fields.json.KeyTextTransform("name", "traits"),
                                models.Value("", output_field=models.TextField()),
                                output_field=models.TextField(),
                            ),
                            models.Value(" ", output_field=models.TextField()),
                            django.db.models.functions.comparison.Coalesce(
                                django.db.models.fields.json.KeyTextTransform("first_name", "traits"),
                                models.Value("", output_field=models.TextField()),
                                output_field=models.TextField(),
                            ),
                            models.Value(" ", output_field=models.TextField()),
                            django.db.models.functions.comparison.Coalesce(
                                django.db.models.fields.json.KeyTextTransform("last_name", "traits"),
                                models.Value("", output_field=models.TextField()),
                                output_field=models.TextField(),
                            ),
                            models.Value(" ", output_field=models.TextField()),
                            django.db.models.functions.comparison.Coalesce(
                                django.db.models.fields.json.KeyTextTransform("firstName", "traits"),
                                models.Value("", output_field=models.TextField()),
                                output_field=models.TextField(),
                            ),
                            models.Value(" ", output_field=models.TextField()),
                            django.db.models.functions.comparison.Coalesce(
                                django.db.models.fields.json.KeyTextTransform("lastName", "traits"),
                                models.Value("", output_field=models.TextField()),
                                output_field=models.TextField(),
                            ),
                            output_field=models.TextField(),
                        ),
                        output_field=models.TextField(),
                    ),
                    name="gin_trgm_ops",
                ),
                name="profile_name_trgm",
            ),
        ),
    ]
