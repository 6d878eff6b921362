"""What the report calls things: the colour spaces, our curves and every codec's label.

Our models enter the evaluation as curves named ``learned`` (the RGB models) or
``learned_<family>`` (``learned_ycbcr``, ``learned_gan``, ``learned_rdoq``,
``learned_truncated``, ...); the baselines by their short names (baselines.py).
"""

from __future__ import annotations

from rtaic.color import CHANNEL_WEIGHTS, COLOR_SPACE_NAMES, COLOR_SPACES

# The colour spaces of every summary, table and plot, in report order (rtaic.color).
SPACES = COLOR_SPACES

OURS = "learned"  # our RGB models' curve
OURS_LABEL = "Ours (rtaic)"
# Words of a family name written otherwise in labels: learned_ycbcr -> "Ours (rtaic, YCbCr)".
_WORDS = {"ycbcr": COLOR_SPACE_NAMES["ycbcr"], "gan": "GAN", "rdoq": "RDOQ", "refine": "refined"}


def curve(family: str | None = None) -> str:
    """The name of our curve of that family: None -> ``learned``, ``"gan"`` -> ``learned_gan``."""
    return OURS if family is None else f"{OURS}_{family}"


RDOQ_CURVE = curve("rdoq")  # the RGB models encoding with RDOQ (measure.with_rdoq)
# Each colour space's curve -> the same models encoding with RDOQ.
RDOQ_CURVES = {OURS: RDOQ_CURVE, **{curve(s): curve(f"{s}_rdoq") for s in COLOR_SPACES if s != "rgb"}}
# Each colour space's curve -> the same models encoding with latent refinement.
REFINE_CURVES = {OURS: curve("refine"), **{curve(s): curve(f"{s}_refine") for s in COLOR_SPACES if s != "rgb"}}
TRUNCATED_CURVE = curve("truncated")  # one model's files cut short (progressive decoding)


def is_ours(codec: str) -> bool:
    """Our curves: ``learned`` (the RGB models) and ``learned_<family>`` (e.g. YCbCr, GAN)."""
    return codec == OURS or codec.startswith(OURS + "_")


def label(codec: str) -> str:
    """Legend and table text: ``Ours (rtaic)``, ``Ours (rtaic, YCbCr)``, a baseline's label,
    or the name itself."""
    if codec == OURS:
        return OURS_LABEL
    if is_ours(codec):
        family = codec.removeprefix(OURS + "_")
        words = [_WORDS.get(word, word) for word in family.split("_")]
        return f"{OURS_LABEL[:-1]}, {', '.join(words)})"
    from rtaic.evaluation.baselines import BASELINES  # (lazy: the zoo reads the curve names
                                                      # without the codecs' plugins)
    return BASELINES[codec].label if codec in BASELINES else codec


def space_name(space: str) -> str:
    """``rgb`` -> ``RGB``, ``ycbcr`` -> ``YCbCr``."""
    return COLOR_SPACE_NAMES[space]


def space_label(space: str) -> str:
    """The space with the metric's channel weights as a ratio: ``YCbCr, channels 6:1:1``."""
    weights = CHANNEL_WEIGHTS[space]
    ratio = ":".join(f"{w / min(weights):.0f}" for w in weights)
    return f"{space_name(space)}, channels {ratio}"
