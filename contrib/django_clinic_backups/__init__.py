"""Optional Django app for a django-tenants host of clinic-backups (docs/django-tenants.md):

- a `post_schema_sync` receiver that runs `grant` for every new tenant (as the host's own
  database role), so a new or cloned tenant is backed up by the next scheduler run;
- `RestoreMaintenanceMiddleware`: a 503 maintenance answer (Spanish page, or JSON for API
  calls) for a tenant while a restore holds its lock.

Settings: CLINIC_BACKUPS_ROLE (the functions' database role, required),
CLINIC_BACKUPS_TABLES_OWNER (default: that role), CLINIC_BACKUPS_API_PREFIXES (paths answered
with JSON, default ["/api/"]), CLINIC_BACKUPS_LOCK_TIMEOUT_MS (default 200).
"""
