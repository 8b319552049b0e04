"""The layouts: how a model's attributes share backbones, and the seed study's networks, as plain data.

Kept apart from the networks so the command line can list layouts and architectures without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from fashionattr.errors import UserError

STUDY_ARCHS: tuple[str, ...] = ("resnet50", "resnet152", "se-resnet50", "se-resnet152", "vgg19_bn", "dpn131")
"""The six networks of the seed study, in the order of its result table."""


@dataclass(frozen=True)
class Layout:
    """How a layout shares backbones between attributes, as the rest of the program needs to know it."""

    name: str
    summary: str
    one_model_per_attribute: bool = False
    """Training fits one network per attribute, each in a run folder of its own (the seed study's method)."""
    uses_grouping: bool = False
    """The schema's `--grouping` decides which attributes share a backbone."""
    learns_applicability: bool = False
    """One backbone sees every attribute's images, so an applicability head on it can learn from all of them which
    attributes an image shows (`fashionattr.applicability`)."""


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("per-attribute", "one network per attribute (the seed study)", one_model_per_attribute=True),
        Layout(
            "multitask",
            "one backbone with a linear head per attribute: one forward pass for all",
            learns_applicability=True,
        ),
        Layout("grouped", "one backbone per group of attributes (the schema's --grouping)", uses_grouping=True),
    )
}
"""Every layout by name; `--layout` choices, config checks and the grid read this table."""


def layout_of(name: str) -> Layout:
    """The layout called `name`, or a user error listing the layouts."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise UserError(f"unknown layout {name!r}; choose one of: {', '.join(LAYOUTS)}") from None
