"""Tagged catalogue: a folder of product photos tagged by a model, browsed by tag and by likeness.

One catalogue, two places it can live out of the box: an SQLite file (the embedded default) or a PostgreSQL
database shared by service replicas and tagging workers on many machines (`--catalog postgresql://user@host/db`);
another backend is one module registered under the entry-point group `fashionattr.catalog_backends`. `store` owns
all SQL, `backends` what differs between the backends (one module each) and which one a location goes to;
`indexing` tags a folder in; `reading` answers tag search and facets through the in-memory columns of `facets`
(built from the packed tag rows of `layout`), and similar-garment search through the vector-index seam of `vectors`
(exact or approximate) kept up to date by `similarity`; `blobs` checks the bytes a native library will read.
"""

from fashionattr.catalog.files import file_sha256, files_fingerprint, model_fingerprint, scan_images
from fashionattr.catalog.indexing import IndexReport, index_catalog
from fashionattr.catalog.reading import Catalog, CatalogItem, Filters, SearchResult, Tag
from fashionattr.catalog.store import FORMAT_VERSION, CatalogStore, open_store

__all__ = [
    "FORMAT_VERSION",
    "Catalog",
    "CatalogItem",
    "CatalogStore",
    "Filters",
    "IndexReport",
    "SearchResult",
    "Tag",
    "file_sha256",
    "files_fingerprint",
    "index_catalog",
    "model_fingerprint",
    "open_store",
    "scan_images",
]
