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
         *     - `operation_in_progress` (409): a backup or restore of this clinic is already running.
         *     - `backup_not_completed` (409): the backup is not completed (pending, running, failed or deleted).
         *     - `payload_too_large` (413): the request body is too large.
         *     - `validation_error` (422): a field is invalid; `details` lists each one.
         *     - `quota_exceeded` (429): the clinic reached its daily limit of manual backups.
         *     - `internal_error` (500): an unexpected error; the request id is in the logs.
         *     - `service_unavailable` (503): the database, storage or job queue is unavailable; retry later.
         * @enum {string}
         */
        ErrorCode: "bad_request" | "invalid_cursor" | "missing_token" | "invalid_token" | "token_expired" | "forbidden" | "clinic_not_available" | "not_found" | "backup_not_found" | "operation_in_progress" | "backup_not_completed" | "payload_too_large" | "validation_error" | "quota_exceeded" | "internal_error" | "service_unavailable";
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
        /** @enum {string} */
        BackupStatus: "pending" | "running" | "completed" | "failed" | "deleted";
        /** @enum {string} */
        BackupTrigger: "manual" | "scheduled" | "pre_restore";
        /**
         * @description Why a backup failed (the record's `error_code`):
         *     - `dump_failed`: pg_dump exited with an error.
         *     - `dump_timeout`: pg_dump took longer than the configured limit.
         *     - `archive_invalid`: the dump was empty, short or not a pg_dump archive.
         *     - `foreign_objects_in_archive`: the archive named objects of another schema.
         *     - `server_version_unsupported`: the database server is newer than the bundled pg_dump.
         *     - `storage_failed`: the upload to storage failed; no file was kept.
         *     - `clinic_not_available`: the clinic is no longer active.
         *     - `stale`: the backup did not finish within the worker's time limit.
         *     - `internal_error`: an unexpected error.
         * @enum {string}
         */
        BackupErrorCode: "dump_failed" | "dump_timeout" | "archive_invalid" | "foreign_objects_in_archive" | "server_version_unsupported" | "storage_failed" | "clinic_not_available" | "stale" | "internal_error";
        Backup: {
            /** Format: uuid */
            id: string;
            status: components["schemas"]["BackupStatus"];
            trigger: components["schemas"]["BackupTrigger"];
            file_name?: string | null;
            size_bytes?: number | null;
            /** @description sha256 of the stored bytes (what a download delivers) */
            sha256?: string | null;
            /** @enum {string} */
            encryption: "none";
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
            /** @description Short reason */
            error?: string | null;
            error_code?: components["schemas"]["BackupErrorCode"] | null;
            note?: string | null;
        };
        BackupPage: {
            items: components["schemas"]["Backup"][];
            next_cursor: string | null;
        };
        CreateBackupRequest: {
            note?: string;
        };
        Download: {
            /** Format: uri */
            url: string;
            /** Format: date-time */
            expires_at: string;
            file_name: string;
            size_bytes: number;
            sha256: string;
        };
        /** @enum {string} */
        Permission: "list_backups" | "create_backup" | "download_backup" | "delete_backup";
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
            /** @example es-ES */
            locale: string;
            /** @example Europe/Madrid */
            time_zone: string;
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
export const errorCodeValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["ErrorCode"]> = ["bad_request", "invalid_cursor", "missing_token", "invalid_token", "token_expired", "forbidden", "clinic_not_available", "not_found", "backup_not_found", "operation_in_progress", "backup_not_completed", "payload_too_large", "validation_error", "quota_exceeded", "internal_error", "service_unavailable"];
export const backupStatusValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["BackupStatus"]> = ["pending", "running", "completed", "failed", "deleted"];
export const backupTriggerValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["BackupTrigger"]> = ["manual", "scheduled", "pre_restore"];
export const backupErrorCodeValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["BackupErrorCode"]> = ["dump_failed", "dump_timeout", "archive_invalid", "foreign_objects_in_archive", "server_version_unsupported", "storage_failed", "clinic_not_available", "stale", "internal_error"];
export const backupEncryptionValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["Backup"]["encryption"]> = ["none"];
export const backupFormatValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["Backup"]["format"]> = ["custom"];
export const permissionValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["Permission"]> = ["list_backups", "create_backup", "download_backup", "delete_backup"];
export const meRoleValues: ReadonlyArray<FlattenedDeepRequired<components>["schemas"]["Me"]["role"]> = ["admin", "staff"];
