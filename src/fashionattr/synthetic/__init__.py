"""The built-in synthetic dataset: drawn figures and close-ups in the FashionAI layout, with what each drawing shows.

`generate.py` writes a dataset root (`generate_dataset`); `scenes.py` composes each image's scene, `figure.py` and
`draw.py` draw it, and `truth.py` records what every attribute shows for the complete labels.
"""
