"""Data: label and question readers, the split, input preprocessing and augmentation, datasets, the image cache,
image decoding, folder import, and the synthetic generator."""
