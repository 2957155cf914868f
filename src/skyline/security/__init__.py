"""Encryption at rest, signed artifacts, tokens and roles, the audit log, TLS."""
