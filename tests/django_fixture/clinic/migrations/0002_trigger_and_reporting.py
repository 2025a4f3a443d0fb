"""A trigger (patients' search column) and the reporting role's read access, as a host
application's hand-written migrations add them. The role `clinic_reporting` is created by the
suite before the tenants migrate (it is cluster-wide)."""

from __future__ import annotations

from django.db import migrations

TRIGGER = """
CREATE FUNCTION clinic_patient_search() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.name_search := lower(NEW.name);
    RETURN NEW;
END
$$;
CREATE TRIGGER clinic_patient_search BEFORE INSERT OR UPDATE ON clinic_patient
    FOR EACH ROW EXECUTE FUNCTION clinic_patient_search();
"""

REPORTING = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'clinic_reporting') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO clinic_reporting', current_schema());
        GRANT SELECT ON clinic_patient, clinic_appointment, clinic_invoice TO clinic_reporting;
    END IF;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("clinic", "0001_initial")]

    operations = [
        migrations.RunSQL(TRIGGER, "DROP FUNCTION clinic_patient_search() CASCADE"),
        migrations.RunSQL(REPORTING, migrations.RunSQL.noop),
    ]
