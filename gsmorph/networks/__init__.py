"""Registration networks: a backbone of the table in gsmorph/backbones.py, wrapped so that
calling it gives a displacement.

>>> net = build("voxelmorph", spatial_dims=2, preset="paper")
>>> disp = net(torch.cat([moving, fixed], dim=1))      # (B, ndim, *S), voxels, channel i = axis i
>>> disp, field = net(x, with_velocity=True)           # field: what the smoothness loss sees

With ``int_steps > 0`` (diffeomorphic) the backbone's output is a stationary velocity,
integrated inside the model by scaling and squaring; `field` is then the velocity,
otherwise the displacement itself.

A network made by `assemble` (and so by `build`) keeps its constructor arguments in
`net.recipe` (as voxelmorph's LoadableModel does): {"builder": "module:attribute",
"spatial_dims", "kwargs", "int_steps"}, plain JSON. `from_recipe` rebuilds it from a run's
run.json alone, importing only a builder the caller allows.
"""
from __future__ import annotations

import torch
from torch import nn

from gsmorph import backbones
from gsmorph.networks.warp import integrate, warp_image, warp_label

__all__ = ["RegistrationNet", "assemble", "available", "build", "from_recipe", "integrate", "warp_image", "warp_label"]


class RegistrationNet(nn.Module):
    """A backbone whose output is a displacement, or a velocity integrated into one.

    forward(x (B, 2, *S), *extra) -> (B, ndim, *S) displacement (voxels); `extra` goes to the
    backbone (e.g. HyperMorph's lambda). with_velocity=True returns (displacement, field),
    field being the backbone's output (velocity if int_steps > 0, else the displacement).
    """

    def __init__(self, backbone: nn.Module, int_steps: int = 0):
        super().__init__()
        if int(int_steps) < 0:
            raise ValueError(f"integration steps must be >= 0, got {int_steps}")
        self.backbone = backbone
        self.int_steps = int(int_steps)

    def forward(self, x: torch.Tensor, *extra, with_velocity: bool = False):
        field = self.backbone(x, *extra)
        disp = integrate(field, self.int_steps) if self.int_steps else field
        return (disp, field) if with_velocity else disp


def available() -> list[str]:
    """Backbone names `build` accepts (the table in gsmorph/backbones.py)."""
    return backbones.names()


def build(name: str, spatial_dims: int, diffeomorphic: bool = False, int_steps: int = 7,
          **kwargs) -> RegistrationNet:
    """The backbone `name` for 2D or 3D inputs, as a RegistrationNet; kwargs go to its
    builder (see its docstring). diffeomorphic: integrate in `int_steps` steps."""
    from gsmorph.errors import GSMorphError
    from gsmorph.plugins import resolve

    if name not in backbones.names():
        raise ValueError(f"unknown backbone '{name}' (available: {', '.join(available())})")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    return assemble(backbones.get(name).builder, spatial_dims, kwargs, int_steps if diffeomorphic else 0,
                    label=f"backbone '{name}'")


def assemble(builder: str, spatial_dims: int, kwargs: dict, int_steps: int = 0, label: str | None = None) -> RegistrationNet:
    """RegistrationNet(builder(spatial_dims, **kwargs), int_steps), `builder` a
    "module:attribute", with its recipe recorded; ValueError naming `label` (default: the
    builder) for a builder that cannot be loaded or refuses the kwargs."""
    from gsmorph.errors import GSMorphError
    from gsmorph.plugins import resolve

    label = label or f"network '{builder}'"
    try:
        make = resolve(builder)
    except GSMorphError as err:
        raise ValueError(f"{label}: {err}") from None
    try:
        net = make(spatial_dims, **kwargs)
    except TypeError as err:
        raise ValueError(f"{label}: bad keyword arguments ({err})") from None
    wrapped = RegistrationNet(net, int_steps)
    wrapped.recipe = {"builder": builder, "spatial_dims": int(spatial_dims), "kwargs": dict(kwargs),
                      "int_steps": int(int_steps)}
    return wrapped


def from_recipe(recipe: dict, allowed: set[str] | frozenset[str]) -> RegistrationNet:
    """The network a recipe describes (see the module docstring); ValueError for a recipe
    without its keys or whose builder is not in `allowed` (a run.json is data: nothing it
    names is imported unless the caller's tables name it too)."""
    if not isinstance(recipe, dict) or not {"builder", "spatial_dims", "kwargs", "int_steps"} <= set(recipe):
        raise ValueError("'network' needs builder, spatial_dims, kwargs and int_steps")
    if recipe["builder"] not in allowed:
        raise ValueError(f"network builder '{recipe['builder']}' is not one this method may use "
                         f"({', '.join(sorted(allowed))})")
    if int(recipe["spatial_dims"]) not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {recipe['spatial_dims']}")
    return assemble(recipe["builder"], int(recipe["spatial_dims"]), dict(recipe["kwargs"]), int(recipe["int_steps"]))
