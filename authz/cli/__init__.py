"""Operator commands delegated from ``authz``: ``authz admin`` (the cache admin API) and ``authz check`` (one
simulated request, against a running service or a configuration file)."""
