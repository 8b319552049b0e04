"""`fashionattr recipes`: the named training recipes, one line each, and what each one sets."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "recipes",
        help="list the named recipes (train --recipe NAME, grid --recipe NAME)",
        description="List the recipes shipped with fashionattr, one line each; with a name, print every setting "
        "it makes and what it costs. Options given to train or grid still win over a recipe.",
    )
    parser.add_argument("name", nargs="?", help="show this recipe's settings")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from fashionattr.recipes import load_recipe, recipe_names

    if args.name is None:
        width = max(len(name) for name in recipe_names())
        for name in recipe_names():
            print(f"{name:<{width}}  {load_recipe(name).description}")
        return 0
    recipe = load_recipe(args.name)
    print(f"# {recipe.name}: {recipe.description}")
    print(f"# cost: {recipe.cost}")
    sections = {"settings": recipe.settings, "grid": recipe.grid, "synthetic": recipe.synthetic}
    print(yaml.safe_dump({key: value for key, value in sections.items() if value}, sort_keys=False), end="")
    return 0
