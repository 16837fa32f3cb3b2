"""Use cases and domain types.  Nothing here imports FastAPI or click."""
