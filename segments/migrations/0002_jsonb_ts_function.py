from django.db import migrations

from segments.rules.ops import TS_FUNCTION_SQL


class Migration(migrations.Migration):
    """segments_jsonb_ts(jsonb): an ISO-8601 string as timestamptz, NULL for anything else (never an
    error), the SQL twin of segments.rules.ops.parse_ts used by date conditions."""

    dependencies = [("segments", "0001_segments_membership_clustering")]

    operations = [
        migrations.RunSQL(TS_FUNCTION_SQL, reverse_sql="DROP FUNCTION IF EXISTS segments_jsonb_ts(jsonb)"),
    ]
