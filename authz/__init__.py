"""phantom-authz: an Envoy ext_authz v3 service for the Phantom Token pattern."""

__version__ = "0.1.0"
