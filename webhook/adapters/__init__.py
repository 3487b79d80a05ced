"""Adapters around the core: HTTP, the cluster (list+watch, listing), files, TLS and certificates."""
