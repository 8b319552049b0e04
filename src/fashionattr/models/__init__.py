"""Models: the layouts, timm backbones under the seed study's names, and the networks built from them.

A layout says how attributes share backbones: `per-attribute` (one network per attribute, the seed study),
`multitask` (one backbone, a head per attribute) or `grouped` (one backbone per group of attributes, such as
design vs. length). A new layout is an entry in `layouts.LAYOUTS` and, when it needs one, an `AttributeNet` in
`networks`: nothing outside this package knows a layout's name or looks inside a network.

`layouts` is plain data (the command line lists it without importing torch); `backbones` creates timm networks and
loads weights files; `networks` builds the models every other package uses through `AttributeNet`.
"""
