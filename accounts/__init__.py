"""Tenancy and credentials: tenants, service keys and user tokens, the bearer authentication of
the API, its permissions and the staff groups (docs/architecture.md). Imports only core."""
