"""The consent ledger is append-only in the database (decision 0009), and the four purposes exist."""

from django.db import migrations

GUARD = """
CREATE OR REPLACE FUNCTION consent_ledger_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'consent ledger is append-only: DELETE refused' USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- the only UPDATE allowed is the erasure service's anonymisation (SET LOCAL cdp.consent_anonymise = 'on'):
    -- the subject is re-keyed and the evidence stripped; what was answered, when and under which policy stays
    IF coalesce(current_setting('cdp.consent_anonymise', true), '') <> 'on' THEN
        RAISE EXCEPTION 'consent ledger is append-only: UPDATE refused' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.anonymised_at IS NOT NULL OR NEW.anonymised_at IS NULL
       OR NEW.id <> OLD.id OR NEW.purpose_id <> OLD.purpose_id OR NEW.granted <> OLD.granted
       OR NEW.source <> OLD.source OR NEW.policy_version <> OLD.policy_version
       OR NEW.recorded_at <> OLD.recorded_at OR NEW.expires_at IS DISTINCT FROM OLD.expires_at
       OR NEW.profile_id = OLD.profile_id THEN
        RAISE EXCEPTION 'consent ledger: only an anonymising update (new subject, stripped evidence) is allowed'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER consent_ledger_append_only
    BEFORE UPDATE OR DELETE ON consent_consentrecord
    FOR EACH ROW EXECUTE FUNCTION consent_ledger_guard();
"""

UNGUARD = """
DROP TRIGGER IF EXISTS consent_ledger_append_only ON consent_consentrecord;
DROP FUNCTION IF EXISTS consent_ledger_guard();
"""

PURPOSES = [
    # key, name, legal basis, default granted, description
    (
        "analytics",
        "Analytics",
        "legitimate_interest",
        True,
        "Recording what you do in the shop (pages, products, orders) to understand and improve it.",
    ),
    (
        "personalisation",
        "Personalisation",
        "consent",
        False,
        "Using your history to recommend products to you.",
    ),
    ("marketing", "Marketing", "consent", False, "Sending you offers by e-mail, SMS or advertising."),
    (
        "third_party_sharing",
        "Sharing with partners",
        "consent",
        False,
        "Sharing your data with selected partners.",
    ),
]


def purposes_create(apps, schema_editor):
    Purpose = apps.get_model("consent", "Purpose")
    for position, (key, name, basis, default, description) in enumerate(PURPOSES):
        Purpose.objects.get_or_create(
            key=key,
            defaults={
                "name": name,
                "legal_basis": basis,
                "default_granted": default,
                "description": description,
                "position": position,
                "policy_version": "1",
            },
        )


class Migration(migrations.Migration):
    dependencies = [("consent", "0001_ledger")]

    operations = [
        migrations.RunSQL(GUARD, UNGUARD),
        migrations.RunPython(purposes_create, migrations.RunPython.noop),
    ]
