"""The HTTP adapter: FastAPI routes over ``corral.core``."""

from corral.api.app import create_app

__all__ = ["create_app"]
