from django.db import migrations

from segments.rules.ops import TS_FUNCTION_SQL


class Migration(migrations.Migration):
    """segments_jsonb_ts without an exception block: a PL/pgSQL exception block starts a
    subtransaction, which PostgreSQL refuses inside a parallel query (segment preview and counts
    over large tables run in parallel)."""

    dependencies = [("segments", "0002_jsonb_ts_function")]

    operations = [
        migrations.RunSQL(
            ["DROP FUNCTION IF EXISTS segments_jsonb_ts(jsonb)", TS_FUNCTION_SQL],
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
