/**
 * GENERATED FILE - do not edit by hand.
 * Source: openapi.yaml (repository root), via openapi-typescript.
 * Regenerate with `npm run gen:api`; `npm run check:api` fails when this file is stale.
 */

export interface paths {
    "/me": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** The caller's clinic, role and the actions the role may take */
        get: operations["getMe"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/audit": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * The clinic's activity log, newest first (admins only)
         * @description Who created, downloaded, deleted, restored or verified a backup, registered a key,
         *     changed the settings — and every refusal. Paginated like `GET /backups`. Entries
         *     are kept whatever the backup retention and survive restores.
         */
        get: operations["listAudit"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/audit/export": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * The clinic's activity log as CSV, behind a short-lived signed URL (admins only)
         * @description Every entry matching the filters (none: all of them), written as CSV (UTF-8) under
         *     the clinic's own storage prefix, age-encrypted to the clinic's registered keys (409
         *     `encryption_key_required` when it has none). The answer is the only place the URL
         *     appears.
         */
        post: operations["exportAudit"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/backups": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** The clinic's backups, newest first */
        get: operations["listBackups"];
        put?: never;
        /**
         * Start a manual backup of the caller's clinic
         * @description Answers 202 with the new record (status `pending`); a worker runs it. Poll
         *     `GET /backups/{id}` until it is `completed` or `failed`. Only one write-side
         *     operation (backup or restore) runs per clinic at a time.
         */
        post: operations["createBackup"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/backups/{id}": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: components["parameters"]["BackupId"];
            };
            cookie?: never;
        };
        /** One backup of the caller's clinic */
        get: operations["getBackup"];
        put?: never;
        post?: never;
        /**
         * Soft-delete a backup (admins by default)
         * @description The record becomes `deleted` at once; the stored file is kept for a grace period
         *     (`DELETE_GRACE_DAYS`) and then purged. Deleting an already deleted backup is a no-op.
         */
        delete: operations["deleteBackup"];
        options?: never;
        head?: never;
        /**
         * Mark a backup to keep (or release it), admins by default
         * @description `{"keep": true}` protects a completed backup from retention: the scheduled-backup
         *     retention never deletes it (an admin still can, with DELETE). `{"keep": false}` hands
         *     it back to retention. Allowed to the roles that may delete (`delete_backup`).
         *     Marking a backup that is not completed is a 409 `backup_not_completed`.
         */
        patch: operations["updateBackup"];
        trace?: never;
    };
    "/backups/{id}/undelete": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: components["parameters"]["BackupId"];
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Recover a deleted backup within its grace period (admins by default)
         * @description Allowed to the roles that may delete (`delete_backup`); audited. A `deleted` backup
         *     whose grace period (`purge_after`) has not passed becomes `completed` again (its
         *     manifest too) and can be downloaded and restored as before. Undeleting a backup that
         *     is already `completed` changes nothing (200). Past `purge_after`, or once its file is
         *     gone: 409 `backup_purged`. Any other status (pending, running, failed, cancelled, or a
         *     deleted backup that never completed): 409 `backup_not_completed`.
         */
        post: operations["undeleteBackup"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/backups/{id}/cancel": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: components["parameters"]["BackupId"];
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Cancel a pending or running backup (admins, and the backup's author)
         * @description Audited. A `pending` backup ends `cancelled` at once (200) and the clinic's lock is
         *     freed. A `running` one answers 202 with `cancel_requested_at` set (status still
         *     `running`): its worker learns it at its next lease heartbeat (within a quarter of
         *     `LOCK_LEASE_SECONDS`), stops pg_dump, aborts the upload, removes anything stored,
         *     frees the lock and ends `cancelled`; poll `GET /backups/{id}`. A finished backup
         *     (completed, failed, deleted, cancelled), or the backup a restore in progress makes
         *     first: 409 `backup_not_cancellable`. Staff may cancel only the backups they started
         *     (403 otherwise). A cancelled manual backup still counts toward the daily quota.
         */
        post: operations["cancelBackup"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/backup-settings": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * The clinic's backup schedule and retention (every role that may list backups)
         * @description A clinic that never saved settings gets the platform's defaults (`is_default: true`):
         *     enabled, every day at 03:00 in the default time zone (Europe/Madrid), and the default
         *     retention (7 daily, 4 weekly, 6 monthly unless the platform says otherwise).
         */
        get: operations["getBackupSettings"];
        /**
         * Replace the clinic's backup schedule and retention (admins by default)
         * @description Takes effect at the next scheduler run (hourly). Invalid settings are a 422
         *     `validation_error` whose `details` name each invalid field; `keep_daily` may not be
         *     below `min_retention_days` (the platform floor).
         */
        put: operations["putBackupSettings"];
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/backups/{id}/download": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: components["parameters"]["BackupId"];
            };
            cookie?: never;
        };
        /** A short-lived signed URL for a completed backup (admins by default) */
        get: operations["getBackupDownload"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/backups/{id}/restore": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: components["parameters"]["BackupId"];
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Restore the clinic from one of its completed backups (admins by default)
         * @description The body must be `{"confirm": "<the clinic's schema name>"}`, exactly (else 422).
         *     Answers 202 with the restore job; poll `GET /restores/{id}`. The job takes the
         *     clinic's operation lock (409 `operation_in_progress` while a backup or another restore
         *     runs) and holds it to the end: an automatic backup of the live data (trigger
         *     `pre_restore`), pre-checks, then one atomic swap — readers see the old data until the
         *     COMMIT and the restored data after it; writes wait while the clinic's tables are
         *     locked. Show the clinic in maintenance while the job is `pending` or `running`:
         *     writes committed by other sessions before the lock stay in the previous data, which
         *     is kept for the undo window (`POST /restores/{id}/undo`). History and audit never
         *     roll back.
         */
        post: operations["restoreBackup"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/backups/{id}/verify": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: components["parameters"]["BackupId"];
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Run a full verification drill of a completed backup (admins by default)
         * @description Restores the backup into a scratch database on a separate verification server and
         *     compares each table's row count with the archive's; the result is stored on the backup
         *     (`verified_at`, `verify_outcome`, `verify_details`). Answers 202 with the job (kind
         *     `verify`). Without a verification server: 503 `verification_unavailable`.
         */
        post: operations["verifyBackup"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/restores": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** The clinic's restores and verifications, newest first */
        get: operations["listRestores"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/restores/{id}": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: components["parameters"]["RestoreId"];
            };
            cookie?: never;
        };
        /** One restore or verification (status, step, timings, error) */
        get: operations["getRestore"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/restores/{id}/undo": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: components["parameters"]["RestoreId"];
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Undo the clinic's latest completed restore, within its undo window (admins)
         * @description Swaps the previous data back the same atomic way (the restored data is set aside for
         *     the same window). Only the clinic's latest completed restore, while `undo_available`
         *     is true (`RESTORE_UNDO_DAYS` after it): otherwise 409 `undo_not_available`. 202 with
         *     the job; poll `GET /restores/{id}` until `status` is `undone` (or `undo_status`
         *     `failed`).
         */
        post: operations["undoRestore"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/backups/{id}/reencrypt": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: components["parameters"]["BackupId"];
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Re-encrypt a backup for the clinic's current keys (admins; a queued job)
         * @description For a backup made before the clinic registered a key (only the platform could open
         *     it). A job decrypts it with the platform's key and encrypts it again for the
         *     platform and every key the clinic has now, into a new file; the new file is verified
         *     before it replaces the old one. Answers 202 with the backup; poll `GET /backups/{id}`
         *     (`reencrypting` is true until it ends).
         */
        post: operations["reencryptBackup"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/encryption-keys": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** The clinic's registered encryption keys (public keys; admins by default) */
        get: operations["listEncryptionKeys"];
        put?: never;
        /** Register an age public key; new backups are also encrypted to it */
        post: operations["registerEncryptionKey"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/encryption-keys/{id}": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        post?: never;
        /** Remove a key (backups already encrypted to it stay so) */
        delete: operations["removeEncryptionKey"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
}
export type webhooks = Record<string, never>;
export interface components {
    schemas: {
        /**
         * @description Stable error codes and their HTTP status:
         *     - `bad_request` (400): the request is malformed (not JSON, a bad query parameter).
         *     - `invalid_cursor` (400): the pagination cursor is not one this API issued.
         *     - `missing_token` (401): no bearer token.
         *     - `invalid_token` (401): the token is not valid (signature, issuer, audience, algorithm, claims).
         *     - `token_expired` (401): the token has expired.
         *     - `forbidden` (403): the caller's role may not take this action.
         *     - `clinic_not_available` (403): the token's clinic is unknown, inactive or not a valid clinic name.
         *     - `not_found` (404): no such route.
         *     - `backup_not_found` (404): no backup with that id in the caller's clinic.
         *     - `restore_not_found` (404): no restore or verification with that id in the caller's clinic.
         *     - `key_not_found` (404): no encryption key with that id is registered for the clinic.
         *     - `operation_in_progress` (409): a backup or restore of this clinic is already running.
         *     - `backup_not_completed` (409): the backup is not completed (pending, running, failed, cancelled or deleted).
         *     - `backup_purged` (409): the deleted backup is past its grace period and its file was (or is being) removed; it cannot be recovered.
         *     - `backup_not_cancellable` (409): the backup has already finished (completed, failed, deleted or cancelled), or it is the backup a restore makes first.
         *     - `undo_not_available` (409): the restore cannot be undone: it is not the clinic's latest completed restore, it was already undone, or its undo window is over.
         *     - `encryption_key_required` (409): the backup is encrypted only to the platform's key; register a clinic key and ask for it to be re-encrypted.
         *     - `key_already_registered` (409): that public key is already registered.
         *     - `backup_file_missing` (410): the backup's record exists but its file is no longer in storage (removed outside the product, or lost); the backup is marked (`file_missing_at`) and cannot be downloaded, restored or verified.
         *     - `payload_too_large` (413): the request body is too large.
         *     - `validation_error` (422): a field is invalid; `details` lists each one.
         *     - `private_key_refused` (422): the request carried an age private key; only public keys are accepted (it was not stored).
         *     - `quota_exceeded` (429): the clinic reached its daily limit of manual backups.
         *     - `internal_error` (500): an unexpected error; the request id is in the logs.
         *     - `service_unavailable` (503): the database, storage or job queue is unavailable; retry later.
         *     - `verification_unavailable` (503): full verification is not configured (no verification database, or it would be the production server).
         * @enum {string}
         */
        ErrorCode: "bad_request" | "invalid_cursor" | "missing_token" | "invalid_token" | "token_expired" | "forbidden" | "clinic_not_available" | "not_found" | "backup_not_found" | "restore_not_found" | "key_not_found" | "operation_in_progress" | "backup_not_completed" | "backup_purged" | "backup_not_cancellable" | "undo_not_available" | "encryption_key_required" | "key_already_registered" | "backup_file_missing" | "payload_too_large" | "validation_error" | "private_key_refused" | "quota_exceeded" | "internal_error" | "service_unavailable" | "verification_unavailable";
        ErrorResponse: {
            error: {
                code: components["schemas"]["ErrorCode"];
                message: string;
                details?: {
                    field: string;
                    message: string;
                }[];
            };
        };
        /**
         * @description `cancelled`: stopped on request (`POST /backups/{id}/cancel`), nothing stored; a
         *     cancelled manual backup still counts toward the daily quota.
         * @enum {string}
         */
        BackupStatus: "pending" | "running" | "completed" | "failed" | "deleted" | "cancelled";
        /** @enum {string} */
        BackupTrigger: "manual" | "scheduled" | "pre_restore";
        /**
         * @description Why a backup, a restore or a verification failed (the `error_code` of a backup, or of
         *     a restore job):
         *     - `dump_failed`: pg_dump exited with an error.
         *     - `dump_timeout`: pg_dump took longer than the configured limit.
         *     - `archive_invalid`: the dump was empty, short or not a pg_dump archive.
         *     - `foreign_objects_in_archive`: the archive named objects of another schema.
         *     - `server_version_unsupported`: the database server is newer than the bundled pg_dump.
         *     - `storage_failed`: the upload to storage failed; no file was kept.
         *     - `storage_object_too_large`: the encrypted archive is larger than the store accepts in one object (Supabase's project upload limit or the bucket's `file_size_limit`, named in `error`) and could not be split into parts under it (`STORAGE_SPLIT_ARCHIVES` off, or more than 999 parts); raise the limit or turn splitting on; no file was kept.
         *     - `encryption_failed`: the archive could not be encrypted: one of the clinic's keys (named in `error`, with its fingerprint; marked `usable: false` in `GET /encryption-keys`) is one age cannot encrypt to, or the encryption library failed; nothing was stored.
         *     - `clinic_not_available`: the clinic is no longer active.
         *     - `stale`: the backup (or restore job) did not finish within the worker's time limit.
         *     - `checksum_mismatch`: the stored file's sha256 or size differs from the backup's (damaged or tampered); nothing changed.
         *     - `backup_file_missing`: the backup's file is no longer in storage (the backup is marked `file_missing_at`); nothing changed.
         *     - `missing_dependency`: the backup needs an object of another schema (an extension, a type, a shared table) that no longer exists; nothing changed.
         *     - `restore_failed`: the backup's SQL failed in the restore transaction (e.g. a foreign key into another schema no longer holds), or the restore role lacks a right; nothing changed.
         *     - `restore_interrupted`: pg_restore or psql stopped, the connection was lost, or the time limit passed; nothing changed.
         *     - `clinic_busy`: the clinic's tables could not be locked in time (a long transaction); nothing changed.
         *     - `pre_restore_backup_failed`: the automatic backup before the restore failed; nothing changed.
         *     - `outside_dependents`: objects outside the clinic's schema (a view in `public`, a foreign key, a function) depend on its tables and would not follow the restore; they are named in `error` (objects in other clinics only counted); nothing changed.
         *     - `verification_failed`: the restored row counts differ from the archive's, or the drill could not restore it.
         *     - `verification_unavailable`: no verification database is configured.
         *     - `internal_error`: an unexpected error.
         * @enum {string}
         */
        BackupErrorCode: "dump_failed" | "dump_timeout" | "archive_invalid" | "foreign_objects_in_archive" | "server_version_unsupported" | "storage_failed" | "storage_object_too_large" | "encryption_failed" | "clinic_not_available" | "stale" | "checksum_mismatch" | "backup_file_missing" | "missing_dependency" | "restore_failed" | "restore_interrupted" | "clinic_busy" | "pre_restore_backup_failed" | "outside_dependents" | "verification_failed" | "verification_unavailable" | "internal_error";
        Backup: {
            /** Format: uuid */
            id: string;
            status: components["schemas"]["BackupStatus"];
            trigger: components["schemas"]["BackupTrigger"];
            file_name?: string | null;
            size_bytes?: number | null;
            /** @description sha256 of the stored bytes (what a download delivers) */
            sha256?: string | null;
            /**
             * @description `age`: the stored file is an age-encrypted archive (`.dump.age`).
             * @enum {string}
             */
            encryption: "none" | "age";
            /** @description sha256 of the archive inside the encryption (what restore checks) */
            plaintext_sha256?: string | null;
            /** @description Who the file is encrypted to (public keys only). */
            recipients?: components["schemas"]["Recipient"][];
            /** @description A re-encryption for the clinic's current keys is queued or running. */
            reencrypting?: boolean;
            /**
             * Format: date-time
             * @description When a download, restore or verification found the file gone from storage (410 `backup_file_missing`); null while it was never found missing.
             */
            file_missing_at?: string | null;
            /**
             * Format: date-time
             * @description When the independent copy in the replica store was made and checked (sha256 read back); null while there is none (no replica configured, not copied yet, or purged).
             */
            replicated_at?: string | null;
            /**
             * Format: date-time
             * @description Until when that copy is locked (S3 Object Lock, compliance mode): nobody, not the platform, can delete it before then; null without a lock.
             */
            replica_retain_until?: string | null;
            /** @enum {string} */
            format: "custom";
            compression: string;
            pg_dump_version?: string | null;
            server_version?: string | null;
            created_by: string;
            created_by_name?: string | null;
            /** Format: date-time */
            created_at: string;
            /** Format: date-time */
            started_at?: string | null;
            /** Format: date-time */
            finished_at?: string | null;
            /** Format: date-time */
            deleted_at?: string | null;
            deleted_by?: string | null;
            /**
             * Format: date-time
             * @description Only for a `deleted` backup: when its file will be purged (`deleted_at` plus
             *     `DELETE_GRACE_DAYS`); until then `POST /backups/{id}/undelete` recovers it.
             */
            purge_after?: string | null;
            /**
             * Format: date-time
             * @description When someone asked to cancel it (`POST /backups/{id}/cancel`).
             */
            cancel_requested_at?: string | null;
            /** @description Short reason */
            error?: string | null;
            error_code?: components["schemas"]["BackupErrorCode"] | null;
            note?: string | null;
            /** @description Marked by an admin to keep; retention never deletes it. */
            keep: boolean;
            /** @description Rows of each table in the archive (the light check after the backup). */
            table_counts?: {
                [key: string]: number;
            } | null;
            /**
             * Format: date-time
             * @description When the light check ran.
             */
            checked_at?: string | null;
            /** @description The light check (no database) - sha256, table of contents, rows per table. */
            check_outcome?: components["schemas"]["VerifyOutcome"] | null;
            check_error?: string | null;
            /**
             * Format: date-time
             * @description When the last full drill ran.
             */
            verified_at?: string | null;
            /** @description The last full drill (restored into a verification database, counts compared). */
            verify_outcome?: components["schemas"]["VerifyOutcome"] | null;
            /** @description The drill's findings (tables, rows, mismatches, extensions created, error). */
            verify_details?: {
                [key: string]: unknown;
            } | null;
        };
        /** @enum {string} */
        VerifyOutcome: "passed" | "failed";
        RestoreRequest: {
            /** @description The clinic's schema name (`GET /me` clinic.schema), typed exactly. */
            confirm: string;
        };
        /** @enum {string} */
        RestoreKind: "restore" | "verify";
        /** @enum {string} */
        RestoreStatus: "pending" | "running" | "completed" | "failed" | "undone";
        /**
         * @description Where the job is: `queued`; a restore's `pre_restore_backup` (the stored object is
         *     verified beside it), `verifying` (waiting for that verification), `checking`,
         *     `restoring`, `done`; an undo's `undo_queued`, `undoing`, `undone`; a verification's
         *     `verifying`, `done`.
         * @enum {string}
         */
        RestoreStep: "queued" | "pre_restore_backup" | "checking" | "restoring" | "verifying" | "done" | "undo_queued" | "undoing" | "undone";
        Restore: {
            /** Format: uuid */
            id: string;
            kind: components["schemas"]["RestoreKind"];
            status: components["schemas"]["RestoreStatus"];
            step: components["schemas"]["RestoreStep"] | null;
            /**
             * Format: uuid
             * @description The backup restored (or verified).
             */
            backup_id: string;
            /**
             * Format: uuid
             * @description The automatic backup of the live data taken before the restore.
             */
            pre_restore_backup_id: string | null;
            requested_by: string;
            requested_by_name?: string | null;
            /** Format: date-time */
            created_at: string;
            /** Format: date-time */
            started_at: string | null;
            /** Format: date-time */
            finished_at: string | null;
            /** @description How long the clinic's tables were locked against writes (restores). */
            lock_seconds: number | null;
            /** @description Seconds per step (pre_restore_backup_seconds; verify_seconds, the whole stored object read and checked before any lock, beside the pre-restore backup; check_seconds; restore_seconds). */
            timings: {
                [key: string]: number;
            };
            error_code: components["schemas"]["BackupErrorCode"] | null;
            /** @description Short reason */
            error: string | null;
            /**
             * Format: date-time
             * @description Until when the previous data is kept for an undo (RESTORE_UNDO_DAYS).
             */
            undo_until: string | null;
            /** @description It is the clinic's latest completed restore and its undo window is open. */
            undo_available: boolean;
            /** @enum {string|null} */
            undo_status: "pending" | "running" | "failed" | null;
            /** Format: date-time */
            undone_at?: string | null;
            undo_error_code?: components["schemas"]["BackupErrorCode"] | null;
            undo_error?: string | null;
            /** @description Rows restored per table (restores), or counted in the archive (drills). */
            table_counts?: {
                [key: string]: number;
            } | null;
            /** @description A verification's result. */
            outcome?: components["schemas"]["VerifyOutcome"] | null;
        };
        RestorePage: {
            items: components["schemas"]["Restore"][];
            next_cursor: string | null;
        };
        /** @description An action (`backup.create`, `backup.download`, `restore.run`…) or its family (`backup`). */
        AuditAction: string;
        /**
         * @description Every action the service writes to a clinic's activity log (an entry's `action`).
         *     The UI labels each one (es + en); tests/unit/test_contracts.py fails when the layer
         *     writes an action missing here.
         * @enum {string}
         */
        AuditActionCode: "audit.export" | "audit.list" | "auth.token" | "backup.cancel" | "backup.check" | "backup.create" | "backup.delete" | "backup.download" | "backup.get" | "backup.keep" | "backup.list" | "backup.purge" | "backup.reencrypt" | "backup.replica_read" | "backup.replicate" | "backup.retention" | "backup.run" | "backup.undelete" | "backup.verify" | "keys.list" | "keys.register" | "keys.remove" | "restore.drop" | "restore.get" | "restore.list" | "restore.request" | "restore.run" | "restore.undo" | "settings.get" | "settings.update";
        AuditEntry: {
            /** Format: uuid */
            id: string;
            /** Format: date-time */
            at: string;
            /** @description What was done: `backup.create`, `restore.run`… */
            action: string;
            /** @description How it ended (`accepted`, `signed`, `denied`, `rejected`, `failed`…). */
            outcome: string;
            /** @description The user (from the token), or the system part (`scheduler`, `worker`…). */
            actor_id: string | null;
            actor_name: string | null;
            actor_role: string | null;
            request_id: string | null;
            /** Format: uuid */
            backup_id: string | null;
            /** @description Reasons, codes and ids; never a key, token, URL or connection string. */
            details: {
                [key: string]: unknown;
            };
        };
        AuditPage: {
            items: components["schemas"]["AuditEntry"][];
            next_cursor: string | null;
        };
        AuditExportRequest: {
            action?: components["schemas"]["AuditAction"];
            /** Format: date-time */
            from?: string;
            /** Format: date-time */
            to?: string;
        };
        AuditExport: {
            /**
             * Format: uri
             * @description Short-lived; never logged.
             */
            url: string;
            /** Format: date-time */
            expires_at: string;
            file_name: string;
            rows: number;
        };
        BackupPage: {
            items: components["schemas"]["Backup"][];
            next_cursor: string | null;
        };
        CreateBackupRequest: {
            note?: string;
        };
        Download: {
            /**
             * Format: uri
             * @description The file; for a split backup (`parts` present), its first part only.
             */
            url: string;
            /** Format: date-time */
            expires_at: string;
            file_name: string;
            size_bytes: number;
            /** @description sha256 of the file (for a split backup, of its parts joined in order) */
            sha256: string;
            /** @enum {string} */
            encryption: "none" | "age";
            /** @description The clinic's keys that open the file (`age -d -i <key file>`). */
            recipients: {
                label: string;
                fingerprint: string;
            }[];
            /**
             * @description Only for a backup larger than the storage accepts in one object: its numbered parts
             *     in order, one signed URL each. Joined in order (`cat a.part001 a.part002 > a` on
             *     Linux and macOS, `copy /b a.part001+a.part002 a` on Windows) they are the file
             *     `file_name`, with `size_bytes` and `sha256`.
             */
            parts?: components["schemas"]["DownloadPart"][];
        };
        DownloadPart: {
            /** Format: uri */
            url: string;
            /** @description the part's file name: `<file_name>.part001`… */
            name: string;
            size_bytes: number;
            /** @description sha256 of this part */
            sha256: string;
        };
        Recipient: {
            /** @enum {string} */
            kind: "platform" | "clinic";
            label: string;
            fingerprint: string;
            public_key: string;
            /** Format: uuid */
            key_id?: string;
        };
        EncryptionKey: {
            /** Format: uuid */
            id: string;
            label: string;
            /** @description age X25519 public key (age1…) */
            public_key: string;
            fingerprint: string;
            created_by: string;
            created_by_name?: string | null;
            /** Format: date-time */
            created_at: string;
            /**
             * @description Whether age can encrypt to the key (proven with a probe each time the keys are
             *     listed). A key registered through this API always is; one that is not (stored by
             *     another way) fails every backup with `encryption_failed` until it is removed.
             */
            usable: boolean;
            /** @description Why the key cannot be used, when `usable` is false. */
            problem: string | null;
        };
        EncryptionKeyList: {
            items: components["schemas"]["EncryptionKey"][];
        };
        RegisterKeyRequest: {
            /** @description Surrounding spaces are removed; a label of spaces only is a 422. */
            label: string;
            /**
             * @description An age X25519 public key (age1…) that age can encrypt to: a probe is encrypted to it
             *     first, so a key of small order (such as the all-zero `age1qqqq…5cu47z`) is a 422
             *     `validation_error` on `public_key`. A private key (AGE-SECRET-KEY-…) is refused.
             */
            public_key: string;
        };
        /**
         * @description `delete_backup` also allows marking backups to keep; `manage_backup_settings` allows
         *     changing the schedule and retention (everyone with `list_backups` may read them);
         *     `restore_backup` allows restoring a backup over the live clinic, undoing a restore and
         *     running a verification drill (everyone with `list_backups` may follow them);
         *     `manage_encryption_keys` allows listing, registering and removing the clinic's keys and
         *     asking for a backup to be re-encrypted for them.
         * @enum {string}
         */
        Permission: "list_backups" | "create_backup" | "download_backup" | "delete_backup" | "manage_backup_settings" | "restore_backup" | "manage_encryption_keys";
        KeepRequest: {
            keep: boolean;
        };
        /** @description ISO 8601 weekday, 1 = Monday … 7 = Sunday. */
        Weekday: number;
        BackupSettingsUpdate: {
            /** @description Scheduled backups on or off. */
            enabled: boolean;
            /**
             * @description Local hour (in `time_zone`) of the scheduled backup. On the night a local hour does
             *     not exist (spring forward) it runs at the first local time after the gap; when it
             *     exists twice (fall back) it runs once.
             */
            hour: number;
            weekdays: components["schemas"]["Weekday"][];
            /** @description IANA time zone */
            time_zone: string;
            /** @description The clinic's locale (dates in the UI); unchanged when left out. */
            locale?: string;
            /**
             * @description Keep the newest scheduled backup of each of the last N days that have one. Never
             *     below `min_retention_days`.
             */
            keep_daily: number;
            /** @description Keep the newest scheduled backup of each of the last N ISO weeks. */
            keep_weekly: number;
            /** @description Keep the newest scheduled backup of each of the last N months. */
            keep_monthly: number;
        };
        BackupSettings: {
            enabled: boolean;
            hour: number;
            weekdays: components["schemas"]["Weekday"][];
            time_zone: string;
            locale: string;
            keep_daily: number;
            keep_weekly: number;
            keep_monthly: number;
            /**
             * @description The platform floor (MIN_RETENTION_DAYS): every scheduled backup younger than this
             *     many days is kept whatever the settings say, and `keep_daily` cannot go below it.
             *     Manual backups are kept until an admin deletes them; the newest completed backup
             *     and backups marked `keep` are never deleted by retention.
             */
            min_retention_days: number;
            /** @description The clinic never saved settings (platform defaults). */
            is_default: boolean;
            /**
             * Format: date-time
             * @description The next scheduled backup's instant (null when disabled).
             */
            next_run_at: string | null;
            updated_by: string | null;
            /** Format: date-time */
            updated_at: string | null;
        };
        Me: {
            clinic: {
                schema: string;
                name: string;
            };
            user: {
                id: string;
                name: string | null;
            };
            /** @enum {string} */
            role: "admin" | "staff";
            permissions: components["schemas"]["Permission"][];
            /**
             * @description The clinic's locale (its backup settings; the platform default otherwise).
             * @example es-ES
             */
            locale: string;
            /**
             * @description The clinic's time zone (its backup settings; the platform default otherwise).
             * @example Europe/Madrid
             */
            time_zone: string;
            /** @description The clinic's own application answers 503 (a maintenance page) while a restore runs (the host installed contrib/django_clinic_backups; setting HOST_MAINTENANCE_MODE). When false, the UI should warn that writes made during a restore are set aside. */
            host_maintenance_mode: boolean;
            /** @description The product keeps an independent, locked copy of every completed backup in a second store (REPLICA_BUCKET). When false, the UI says nothing about it (no backup has `replicated_at`). */
            replica_configured: boolean;
        };
    };
    responses: {
        /** @description An error */
        Error: {
            headers: {
                [name: string]: unknown;
            };
            content: {
                "application/json": components["schemas"]["ErrorResponse"];
            };
        };
    };
    parameters: {
        BackupId: string;
        RestoreId: string;
    };
    requestBodies: never;
    headers: never;
    pathItems: never;
}
export type $defs = Record<string, never>;
export interface operations {
    getMe: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The caller */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Me"];
                };
            };
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    listAudit: {
        parameters: {
            query?: {
                limit?: number;
                /** @description The `next_cursor` of the previous page. */
                cursor?: string;
                /** @description One action (`backup.download`) or a family of them (`backup`). */
                action?: components["schemas"]["AuditAction"];
                /** @description Entries at or after this moment (ISO 8601 with a time zone). */
                from?: string;
                /** @description Entries before this moment (ISO 8601 with a time zone). */
                to?: string;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description One page */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["AuditPage"];
                };
            };
            400: components["responses"]["Error"];
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            422: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    exportAudit: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: {
            content: {
                "application/json": components["schemas"]["AuditExportRequest"];
            };
        };
        responses: {
            /** @description The signed URL of the CSV */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["AuditExport"];
                };
            };
            400: components["responses"]["Error"];
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            409: components["responses"]["Error"];
            413: components["responses"]["Error"];
            422: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    listBackups: {
        parameters: {
            query?: {
                limit?: number;
                /** @description The `next_cursor` of the previous page. */
                cursor?: string;
                status?: components["schemas"]["BackupStatus"];
                /** @description Admins only; include soft-deleted backups. */
                include_deleted?: boolean;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description One page */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["BackupPage"];
                };
            };
            400: components["responses"]["Error"];
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            422: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    createBackup: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: {
            content: {
                "application/json": components["schemas"]["CreateBackupRequest"];
            };
        };
        responses: {
            /** @description Accepted */
            202: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Backup"];
                };
            };
            400: components["responses"]["Error"];
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            409: components["responses"]["Error"];
            413: components["responses"]["Error"];
            422: components["responses"]["Error"];
            429: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    getBackup: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: components["parameters"]["BackupId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The backup */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Backup"];
                };
            };
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            404: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    deleteBackup: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: components["parameters"]["BackupId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Deleted */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            404: components["responses"]["Error"];
            409: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    updateBackup: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: components["parameters"]["BackupId"];
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["KeepRequest"];
            };
        };
        responses: {
            /** @description The updated backup */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Backup"];
                };
            };
            400: components["responses"]["Error"];
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            404: components["responses"]["Error"];
            409: components["responses"]["Error"];
            413: components["responses"]["Error"];
            422: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    undeleteBackup: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: components["parameters"]["BackupId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The backup, completed */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Backup"];
                };
            };
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            404: components["responses"]["Error"];
            409: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    cancelBackup: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: components["parameters"]["BackupId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The backup, cancelled (it was pending) */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Backup"];
                };
            };
            /** @description The backup, still running, asked to cancel (`cancel_requested_at`) */
            202: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Backup"];
                };
            };
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            404: components["responses"]["Error"];
            409: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    getBackupSettings: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The settings */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["BackupSettings"];
                };
            };
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    putBackupSettings: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["BackupSettingsUpdate"];
            };
        };
        responses: {
            /** @description The saved settings */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["BackupSettings"];
                };
            };
            400: components["responses"]["Error"];
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            413: components["responses"]["Error"];
            422: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    getBackupDownload: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: components["parameters"]["BackupId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The signed URL. This response is the only place it ever appears. */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Download"];
                };
            };
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            404: components["responses"]["Error"];
            409: components["responses"]["Error"];
            410: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    restoreBackup: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: components["parameters"]["BackupId"];
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["RestoreRequest"];
            };
        };
        responses: {
            /** @description Accepted */
            202: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Restore"];
                };
            };
            400: components["responses"]["Error"];
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            404: components["responses"]["Error"];
            409: components["responses"]["Error"];
            410: components["responses"]["Error"];
            413: components["responses"]["Error"];
            422: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    verifyBackup: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: components["parameters"]["BackupId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Accepted */
            202: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Restore"];
                };
            };
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            404: components["responses"]["Error"];
            409: components["responses"]["Error"];
            410: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    listRestores: {
        parameters: {
            query?: {
                limit?: number;
                /** @description The `next_cursor` of the previous page. */
                cursor?: string;
                kind?: components["schemas"]["RestoreKind"];
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description One page */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["RestorePage"];
                };
            };
            400: components["responses"]["Error"];
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            422: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    getRestore: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: components["parameters"]["RestoreId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The job */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Restore"];
                };
            };
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            404: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    undoRestore: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: components["parameters"]["RestoreId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Accepted */
            202: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Restore"];
                };
            };
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            404: components["responses"]["Error"];
            409: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    reencryptBackup: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: components["parameters"]["BackupId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Accepted */
            202: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Backup"];
                };
            };
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            404: components["responses"]["Error"];
            409: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    listEncryptionKeys: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The keys */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["EncryptionKeyList"];
                };
            };
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    registerEncryptionKey: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["RegisterKeyRequest"];
            };
        };
        responses: {
            /** @description Registered */
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["EncryptionKey"];
                };
            };
            400: components["responses"]["Error"];
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            409: components["responses"]["Error"];
            413: components["responses"]["Error"];
            422: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
    removeEncryptionKey: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Removed */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            401: components["responses"]["Error"];
            403: components["responses"]["Error"];
            404: components["responses"]["Error"];
            500: components["responses"]["Error"];
            503: components["responses"]["Error"];
        };
    };
}
type FlattenedDeepRequired<T> = {
    [K in keyof T]-?: FlattenedDeepRequired<T[K] extends unknown[] | undefined | null ? Extract<T[K], unknown[]>[number] : T[K]>;
};
type ReadonlyArray<T> = [
    Exclude<T, undefined>
] extends [
    unknown[]
] ? Readonly<Exclude<T, undefined>> : Readonly<Exclude<T, undefined>[]>;
export const errorCodeValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["ErrorCode"]> = ["bad_request", "invalid_cursor", "missing_token", "invalid_token", "token_expired", "forbidden", "clinic_not_available", "not_found", "backup_not_found", "restore_not_found", "key_not_found", "operation_in_progress", "backup_not_completed", "backup_purged", "backup_not_cancellable", "undo_not_available", "encryption_key_required", "key_already_registered", "backup_file_missing", "payload_too_large", "validation_error", "private_key_refused", "quota_exceeded", "internal_error", "service_unavailable", "verification_unavailable"];
export const backupStatusValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["BackupStatus"]> = ["pending", "running", "completed", "failed", "deleted", "cancelled"];
export const backupTriggerValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["BackupTrigger"]> = ["manual", "scheduled", "pre_restore"];
export const backupErrorCodeValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["BackupErrorCode"]> = ["dump_failed", "dump_timeout", "archive_invalid", "foreign_objects_in_archive", "server_version_unsupported", "storage_failed", "storage_object_too_large", "encryption_failed", "clinic_not_available", "stale", "checksum_mismatch", "backup_file_missing", "missing_dependency", "restore_failed", "restore_interrupted", "clinic_busy", "pre_restore_backup_failed", "outside_dependents", "verification_failed", "verification_unavailable", "internal_error"];
export const backupEncryptionValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["Backup"]["encryption"]> = ["none", "age"];
export const backupFormatValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["Backup"]["format"]> = ["custom"];
export const verifyOutcomeValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["VerifyOutcome"]> = ["passed", "failed"];
export const restoreKindValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["RestoreKind"]> = ["restore", "verify"];
export const restoreStatusValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["RestoreStatus"]> = ["pending", "running", "completed", "failed", "undone"];
export const restoreStepValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["RestoreStep"]> = ["queued", "pre_restore_backup", "checking", "restoring", "verifying", "done", "undo_queued", "undoing", "undone"];
export const auditActionCodeValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["AuditActionCode"]> = ["audit.export", "audit.list", "auth.token", "backup.cancel", "backup.check", "backup.create", "backup.delete", "backup.download", "backup.get", "backup.keep", "backup.list", "backup.purge", "backup.reencrypt", "backup.replica_read", "backup.replicate", "backup.retention", "backup.run", "backup.undelete", "backup.verify", "keys.list", "keys.register", "keys.remove", "restore.drop", "restore.get", "restore.list", "restore.request", "restore.run", "restore.undo", "settings.get", "settings.update"];
export const downloadEncryptionValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["Download"]["encryption"]> = ["none", "age"];
export const recipientKindValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["Recipient"]["kind"]> = ["platform", "clinic"];
export const permissionValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["Permission"]> = ["list_backups", "create_backup", "download_backup", "delete_backup", "manage_backup_settings", "restore_backup", "manage_encryption_keys"];
export const meRoleValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["Me"]["role"]> = ["admin", "staff"];
