"""Security primitives every server and agent shares: one permission table (`authorize`), bearer tokens
(`TokenAuthority`), Ed25519-signed model directories, envelope encryption at rest, the hash-chained audit
log, TLS contexts, and the HTTP pieces (the auth dependency, rate limits, body limits, error bodies).

Names are imported on first use: the HTTP pieces pull in FastAPI, which an agent or a CLI command that only
signs or verifies need not pay for.
"""

from skyline.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "audit": ("AuditLog", "verify_audit_log"),
        "envelope": (
            "decrypt",
            "decrypt_file",
            "encrypt",
            "encrypt_file",
            "generate_kek",
            "load_kek",
            "rewrap",
        ),
        "http": (
            "BodySizeLimitMiddleware",
            "RateLimiter",
            "error_response",
            "install_error_handlers",
            "require",
        ),
        "http_audit": ("install_audit",),
        "keyfile": ("read_private", "write_private"),
        "rbac": ("Action", "Principal", "ResourceKind", "Role", "authorize", "is_allowed"),
        "signing": ("generate_signing_keys", "load_public_key", "sign_directory", "verify_directory"),
        "tls": ("client_ssl_context", "generate_self_signed", "server_ssl_context"),
        "tokens": ("TokenAuthority",),
    },
)
