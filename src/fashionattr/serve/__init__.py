"""HTTP service and web page over a `Predictor`, with optional catalogue browsing: see `create_app`."""

from fashionattr.serve.app import ServeSettings, create_app

__all__ = ["ServeSettings", "create_app"]
