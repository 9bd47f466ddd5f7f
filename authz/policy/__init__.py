"""Stage 6: fine-grained authorization with OPA (embedded Rego or the remote Data API)."""
