from django.db import migrations

# Audit rows are append-only. The trigger refuses every UPDATE and DELETE except
# two: the retention job's DELETE (its transaction sets eventflow.audit_retention)
# and Django's SET NULL of user_id when a person is deleted.
APPEND_ONLY = """
CREATE FUNCTION eventflow_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF current_setting('eventflow.audit_retention', true) = 'on' THEN
            RETURN OLD;
        END IF;
    ELSIF NEW.user_id IS NULL AND (to_jsonb(NEW) - 'user_id') = (to_jsonb(OLD) - 'user_id') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit rows are append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER eventflow_audit_append_only
    BEFORE UPDATE OR DELETE ON eventflow_auditentry
    FOR EACH ROW EXECUTE FUNCTION eventflow_audit_append_only();
"""

REVERSE = """
DROP TRIGGER IF EXISTS eventflow_audit_append_only ON eventflow_auditentry;
DROP FUNCTION IF EXISTS eventflow_audit_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("eventflow", "0001_audit_entry")]

    operations = [migrations.RunSQL(APPEND_ONLY, REVERSE)]
