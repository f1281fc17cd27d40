"""Readable names of network parameters for the gradient-conflict maps: the place in the
U-Net (encoder level, bottleneck, decoder level, flow head) instead of the raw parameter path.

VoxelMorph (MONAI's VoxelMorphUNet, 'unet.net.' paths): the network is nested
Sequential(down, SkipConnection(submodule=<next level>), up) per level, so the number of
'submodule.' in a path is its level, and the index after the last one says encoder (0) or
decoder (2); the deepest level is the bottleneck; 'net.1' is the output convolution.
TransMorph (gsmorph/networks/transmorph.py): stages, patch merging, decoder 'up' blocks,
skips and the flow head, named after their module. Any other path is returned as given.
"""
from __future__ import annotations

import re

TENSOR = {"conv.weight": "conv weight", "conv.bias": "conv bias", "adn.N.weight": "norm weight",
          "adn.N.bias": "norm bias"}
TRANSMORPH = (  # (module path pattern, name with {0} the index)
    (r"patch_embed", "patch embedding"),
    (r"stages\.(\d+)", "encoder stage {0}"),
    (r"stage_norms\.(\d+)", "encoder stage {0} norm"),
    (r"merges\.(\d+)", "patch merging {0}"),
    (r"up\.(\d+)", "decoder level {0}"),
    (r"skip_full", "full-resolution skip"),
    (r"skip_half", "half-resolution skip"),
    (r"head", "flow head"),
)


def _tensor(rest: str) -> str:
    """'1.conv.weight' or 'conv.weight' -> 'conv weight'; the last word otherwise."""
    rest = re.sub(r"^(\d+\.)+", "", rest)
    return TENSOR.get(rest, rest.replace(".", " "))


def voxelmorph_name(path: str, depth: int) -> str | None:
    """The place of a VoxelMorphUNet parameter ('unet.net....'), `depth` its deepest level."""
    path = path.removeprefix("backbone.")
    if not path.startswith("unet.net."):
        return None
    rest = path.removeprefix("unet.net.")
    if rest.startswith("1."):
        return f"flow head {_tensor(rest[2:].replace('final_conv_', 'conv '))}"
    level = rest.count("submodule.")
    tail = rest.rsplit("submodule.", 1)[-1] if level else rest.removeprefix("0.")
    index, _, tensor = tail.partition(".")
    if level == depth and level > 0:
        return f"bottleneck {_tensor(tensor)}"
    part = {"0": "encoder", "2": "decoder"}.get(index)
    return f"{part} level {level} {_tensor(tensor)}" if part else None


def transmorph_name(path: str) -> str | None:
    path = path.removeprefix("backbone.")
    for pattern, name in TRANSMORPH:
        match = re.match(pattern + r"(\.|$)", path)
        if match:
            rest = path[match.end():]
            place = name.format(*match.groups()[:-1])
            return f"{place} {rest.replace('.', ' ')}".strip()
    return None


def readable(paths: list[str]) -> list[str]:
    """Readable names of parameter paths (or of module paths), in order; the paths as given
    when the names would not be unique."""
    depth = max((p.count("submodule.") for p in paths), default=0)
    names = [voxelmorph_name(p, depth) or transmorph_name(p) or p for p in paths]
    return names if len(set(names)) == len(set(paths)) else list(paths)
