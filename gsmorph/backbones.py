"""The backbone table: every registration network, declared once (no torch import here).

A backbone maps (B, 2, *S) moving+fixed images to a (B, ndim, *S) displacement (or
velocity) in voxels, for 2D and 3D. `builder` names its class or factory as
"module:attribute", called as builder(spatial_dims, **kwargs) with the kwargs of config
`backbones.<name>`; it is imported only when a network is built (gsmorph.networks.build).
The workflow schema, the CLI and the report take the names and display names from here.

Tables and figures name a backbone by its size (`variant_name`: e.g. "TransMorph-S" for
TransMorph with embedding 48, "VoxelMorph (features 8-16-16-32-32)" for a narrower U-Net
than the paper's); a backbone's `variant` names the function that does it.

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
    variant: str | None = None  # "module:attribute" of f(kwargs) -> display name of that size (None: display)


BACKBONES: list[Backbone] = [
    Backbone("voxelmorph", "VoxelMorph", "gsmorph.networks.voxelmorph:VoxelMorph",
             "gsmorph.backbones:voxelmorph_variant"),
    Backbone("transmorph", "TransMorph", "gsmorph.networks.transmorph:TransMorph",
             "gsmorph.backbones:transmorph_variant"),
]

# TransMorph's published sizes (Chen et al. 2022): (embedding dim, depths) -> name
TRANSMORPH_SIZES = {
    (6, (2, 2, 4, 2)): "TransMorph-T",
    (48, (2, 2, 4, 2)): "TransMorph-S",
    (96, (2, 2, 4, 2)): "TransMorph",
    (128, (2, 2, 12, 2)): "TransMorph-L",
}


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


def variant_name(name: str, kwargs: dict | None = None) -> str:
    """The name of backbone `name` built with `kwargs` (config `backbones.<name>`), for
    tables and figures: its `variant` function's answer, else its display name. Recorded by
    training as run.json's and summary.json's `backbone_display`."""
    backbone = get(name)
    if backbone.variant is None:
        return backbone.display
    return plugins.resolve(backbone.variant)(dict(kwargs or {}))


def _dashed(values) -> str:
    return "-".join(str(int(v)) for v in values)


def transmorph_variant(kwargs: dict) -> str:
    """"TransMorph-T/-S/-L" or "TransMorph" for the published sizes (embedding dim and
    depths, presets resolved); "TransMorph (embed 12, depths 1-1-1-1)" for any other."""
    from gsmorph.networks.transmorph import PRESETS

    preset = PRESETS.get(kwargs.get("preset", "small"), {})
    embed = int(kwargs.get("embed_dim") or preset.get("embed_dim", 0))
    depths = tuple(int(d) for d in (kwargs.get("depths") or preset.get("depths", ())))
    return TRANSMORPH_SIZES.get((embed, depths), f"TransMorph (embed {embed}, depths {_dashed(depths)})")


def voxelmorph_variant(kwargs: dict) -> str:
    """"VoxelMorph" for the paper's U-Net (features 16-32-64-128-256, BatchNorm, linear
    up-sampling); otherwise what differs, e.g. "VoxelMorph (features 8-16-16-32-32)"."""
    from gsmorph.networks.voxelmorph import PRESETS

    preset = kwargs.get("preset", "paper")
    features = kwargs.get("features")
    parts = []
    if features is not None and tuple(int(f) for f in features) != tuple(PRESETS["paper"]["features"]):
        parts.append(f"features {_dashed(features)}")
    elif features is None and preset != "paper":
        parts.append(f"preset {preset}")
    for key, default in (("norm", "preset"), ("upsample", "preset"), ("negative_slope", 0.2)):
        if key in kwargs and kwargs[key] != default:
            parts.append(f"{key.replace('_', ' ')} {kwargs[key]}")
    return "VoxelMorph" + (f" ({', '.join(parts)})" if parts else "")


def rank(name: str) -> tuple[int, str]:
    order = names()
    return (order.index(name), "") if name in order else (len(order), name)


plugins.load()  # after the table exists: a plugin may call register
