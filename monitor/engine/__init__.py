"""Pure computation for monitoring: arrays and tables in, typed results out (no Session, no FastAPI)."""
