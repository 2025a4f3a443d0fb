"""The errors of the Supabase Storage stand-in, as supabase/storage renders them.

One catalogue for both faces of the stand-in: the REST API (``devstack.supabase_storage``,
JSON bodies) and the S3 protocol endpoint (``devstack.supabase_s3``, XML bodies). Mirrors
supabase/storage v1.70.6 (4fa61fba): ``src/internal/errors/codes.ts`` (``ERRORS.*``: code,
HTTP status, message, legacy ``error`` string), ``src/internal/errors/storage-error.ts``
(``render()``), ``src/http/error-handler.ts`` (REST: HTTP 400 unless the status is 500; the
semantic status is the body's ``statusCode``, a string) and ``src/http/routes/s3/error-handler.ts``
(S3: the real HTTP status and ``<Error><Resource/><Code/><Message/></Error>``).
"""

from __future__ import annotations

from xml.sax.saxutils import escape

__all__ = ["S3_XML_NAMESPACE", "StorageError"]

S3_XML_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'


class StorageError(Exception):
    """A ``StorageBackendError``: ``status`` is codes.ts' ``httpStatusCode``, ``code`` the
    ErrorCode, ``error`` the legacy string the REST body carries (the code when none)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        error: str | None = None,
        *,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.error = error or code
        # error-handler.ts: userStatusCode is 500 for a 500, else 400 (a few routes answer
        # with their real status: Fastify's own errors, the not-found handler).
        self.http_status = http_status or (500 if status == 500 else 400)

    def rest_body(self) -> dict[str, str]:
        return {
            "statusCode": str(self.status),
            "code": self.code,
            "error": self.error,
            "message": self.message,
        }

    def s3_xml(self, resource: str) -> bytes:
        """formatS3ErrorResponse as the xml plugin serialises it (namespace on the root)."""
        return (
            f'{_XML_DECLARATION}<Error xmlns="{S3_XML_NAMESPACE}">'
            f"<Resource>{escape(resource)}</Resource><Code>{escape(self.code)}</Code>"
            f"<Message>{escape(self.message)}</Message></Error>"
        ).encode()

    # ------------------------------------------------------------------ codes.ts ERRORS.*

    @classmethod
    def no_such_key(cls) -> StorageError:
        return cls(404, "NoSuchKey", "Object not found", "not_found")

    @classmethod
    def no_such_bucket(cls) -> StorageError:
        return cls(404, "NoSuchBucket", "Bucket not found", "Bucket not found")

    @classmethod
    def no_such_upload(cls) -> StorageError:
        return cls(404, "NoSuchUpload", "Upload not found")

    @classmethod
    def access_denied(cls, message: str) -> StorageError:
        return cls(403, "AccessDenied", message or "Access denied", "Unauthorized")

    @classmethod
    def invalid_jwt(cls, message: str) -> StorageError:
        return cls(400, "InvalidJWT", message or "Invalid JWT")

    @classmethod
    def invalid_signature(cls, message: str = "") -> StorageError:
        return cls(400, "InvalidSignature", message or "Invalid signature")

    @classmethod
    def expired_signature(cls) -> StorageError:
        return cls(400, "ExpiredToken", "The provided token has expired.")

    @classmethod
    def signature_does_not_match(cls) -> StorageError:
        return cls(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
        )

    @classmethod
    def invalid_access_key_id(cls) -> StorageError:
        """MissingS3Credentials: hosted Supabase (multitenant) looks the key up per project."""
        return cls(
            403,
            "InvalidAccessKeyId",
            "The Access Key Id you provided does not exist in our records.",
        )

    @classmethod
    def key_already_exists(cls) -> StorageError:
        return cls(409, "KeyAlreadyExists", "The resource already exists", "Duplicate")

    @classmethod
    def bucket_already_exists(cls) -> StorageError:
        return cls(409, "BucketAlreadyExists", "The resource already exists", "Duplicate")

    @classmethod
    def entity_too_large(
        cls, entity: str = "object", limit: str = "the maximum allowed size"
    ) -> StorageError:
        return cls(413, "EntityTooLarge", f"The {entity} exceeded {limit}", "Payload too large")

    @classmethod
    def invalid_mime_type(cls, mime_type: str) -> StorageError:
        return cls(
            415, "InvalidMimeType", f"mime type {mime_type} is not supported", "invalid_mime_type"
        )

    @classmethod
    def invalid_key(cls, key: str) -> StorageError:
        return cls(400, "InvalidKey", f"Invalid key: {key}")

    @classmethod
    def invalid_bucket_name(cls, name: str) -> StorageError:
        return cls(400, "InvalidBucketName", "Bucket name invalid", "Invalid Input")

    @classmethod
    def invalid_request(cls, message: str) -> StorageError:
        return cls(400, "InvalidRequest", message or "Invalid Request")

    @classmethod
    def invalid_file_size_limit(cls) -> StorageError:
        return cls(
            400, "InvalidRequest", "Invalid file size format, hint: use 20GB / 20MB / 30KB / 3B"
        )

    @classmethod
    def no_content(cls) -> StorageError:
        return cls(400, "InvalidRequest", "No content provided")

    @classmethod
    def missing_content_length(cls) -> StorageError:
        return cls(400, "MissingContentLength", "You must provide the Content-Length HTTP header.")

    @classmethod
    def invalid_checksum(cls, message: str) -> StorageError:
        return cls(400, "InvalidChecksum", message)

    @classmethod
    def invalid_parameter(cls, name: str) -> StorageError:
        return cls(400, "InvalidParameter", f"Invalid Parameter {name}")

    @classmethod
    def validation(cls, message: str) -> StorageError:
        """A Fastify schema-validation failure through error-handler.ts: ``error`` is the
        Error's name, ``code`` FST_ERR_VALIDATION mapped to InvalidRequest (v1.60.5+)."""
        return cls(400, "InvalidRequest", message, "Error")

    @classmethod
    def internal(cls) -> StorageError:
        return cls(500, "InternalError", "Internal Server Error", "Internal")

    @classmethod
    def from_s3(cls, status: int, code: str, message: str) -> StorageError:
        """StorageBackendError.fromError for an S3 SDK error: error = its message, message =
        its name (the REST face); the S3 face passes the backend's status and code on."""
        return cls(status or 500, "S3Error", code or "S3Error", message or "")
