"""The backbone table: every registration network, declared once (no torch import here).

A backbone maps (B, 2, *S) moving+fixed images to a (B, ndim, *S) displacement (or
velocity) in voxels, for 2D and 3D. `builder` names its class or factory as
"module:attribute", called as builder(spatial_dims, **kwargs) with the kwargs of config
`backbones.<name>`; it is imported only when a network is built (gsmorph.networks.build).
The workflow schema, the CLI and the report take the names and display names from here.

Adding a backbone: add a Backbone here (or `register` one from a GSMORPH_PLUGINS module).
"""
from __future__ import annotations

from dataclasses import dataclass

from gsmorph import plugins
from gsmorph.errors import GSMorphError


@dataclass(frozen=True)
class Backbone:
    name: str
    display: str
    builder: str  # "module:attribute"


BACKBONES: list[Backbone] = [
    Backbone("voxelmorph", "VoxelMorph", "gsmorph.networks.voxelmorph:VoxelMorph"),
    Backbone("transmorph", "TransMorph", "gsmorph.networks.transmorph:TransMorph"),
]


def register(backbone: Backbone) -> Backbone:
    """Add a backbone to the table; its name must be new."""
    if any(b.name == backbone.name for b in BACKBONES):
        raise ValueError(f"backbone '{backbone.name}' is already in the table")
    if ":" not in backbone.builder:
        raise ValueError(f"backbone '{backbone.name}': builder must be 'module:attribute'")
    BACKBONES.append(backbone)
    return backbone


def names() -> list[str]:
    return [b.name for b in BACKBONES]


def get(name: str) -> Backbone:
    for backbone in BACKBONES:
        if backbone.name == name:
            return backbone
    raise GSMorphError(f"unknown backbone '{name}'; known: {', '.join(names())}")


def display(name: str) -> str:
    """'voxelmorph' -> 'VoxelMorph'; unknown names as given."""
    return next((b.display for b in BACKBONES if b.name == name), name)


def rank(name: str) -> tuple[int, str]:
    order = names()
    return (order.index(name), "") if name in order else (len(order), name)


plugins.load()  # after the table exists: a plugin may call register
