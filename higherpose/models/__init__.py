"""Networks (registry keyed by MODEL.NAME)."""
