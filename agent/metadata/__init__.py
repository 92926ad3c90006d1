"""Metadata: namespaces, containers and leases in one embedded SQLite database."""
