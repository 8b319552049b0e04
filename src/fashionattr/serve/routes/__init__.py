"""The service's routes, one `APIRouter` per area; `fashionattr.serve.app.create_app` includes them all."""
