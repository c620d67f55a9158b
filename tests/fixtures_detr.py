"""DETR session fixtures (owned by the DETR work)."""
