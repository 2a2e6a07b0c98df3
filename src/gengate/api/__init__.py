"""The HTTP API: the FastAPI app factory, thin routes, wire schemas, error mapping."""

from gengate.api.app import create_app

__all__ = ["create_app"]
