"""HTTP service and web pages over a `Predictor`, with optional catalogue browsing and label review: see
`create_app`."""

from fashionattr.serve.app import create_app
from fashionattr.serve.services import catalog_compatible
from fashionattr.serve.settings import ServeSettings

__all__ = ["ServeSettings", "catalog_compatible", "create_app"]
