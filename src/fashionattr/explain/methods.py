"""The heatmap methods and the default layer rule by name, without importing them: the command line lists them on
every start."""

METHODS = ("layercam", "gradcam", "gradcam++", "hirescam", "xgradcam", "eigencam")
"""All but eigencam are class-specific; eigencam (the first principal component of the activations) ignores the
class, so every attribute of a shared backbone gets the same map."""

DEFAULT_METHOD = "layercam"
"""LayerCAM (Jiang et al., 2021) weighs every position by its own positive gradient, so maps read from a stage
finer than the last stay sharp; on the demo model its peaks land on the labelled part several times as often as
Grad-CAM's (README, "Where the model looks")."""

MIN_MAP_SIDE = 12
"""The default layer is the deepest feature stage whose map has at least this many positions across."""
