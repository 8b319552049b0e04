"""fashionattr: apparel attribute recognition on FashionAI-style data."""

from fashionattr.schema import FASHIONAI, Attribute, Schema, SchemaError, load_schema

__version__ = "0.1.0"
__all__ = ["FASHIONAI", "Attribute", "Schema", "SchemaError", "__version__", "load_schema"]
