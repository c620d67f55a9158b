"""Contract/server session fixtures (owned by the contract work)."""
