"""Data: label and question readers, the split, datasets and transforms, caches, and the synthetic generator."""
