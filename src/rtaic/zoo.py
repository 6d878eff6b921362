"""The project's trained models, shipped inside the package (``rtaic/models``).

``manifest.json`` lists them: file, model fingerprint, target bitrate, how they were
trained. ``rtaic compress`` uses the default one when no model is given, and
``rtaic decompress`` finds the model of a file by the fingerprint in its header.
"""

from __future__ import annotations

import json
from pathlib import Path

from rtaic.evaluation import names

MODELS_DIR = Path(__file__).resolve().parent / "models"
MANIFEST = MODELS_DIR / "manifest.json"


def manifest(models_dir: Path | None = None) -> dict:
    """{"default": name, "models": {name: {"file", "fingerprint", ...}}} (empty if none)."""
    path = MANIFEST if models_dir is None else Path(models_dir) / MANIFEST.name
    if not path.is_file():
        return {"default": None, "models": {}}
    return json.loads(path.read_text())


def model_path(name: str, models_dir: Path | None = None) -> Path:
    entry = manifest(models_dir)["models"].get(name)
    if entry is None:
        raise KeyError(f"no bundled model {name!r}; have {sorted(manifest(models_dir)['models'])}")
    return Path(MODELS_DIR if models_dir is None else models_dir) / entry["file"]


def finetuned_versions(models_dir: Path | None = None) -> dict[str, str]:
    """{plain model: the model finetuned from it} (quantization-aware finetuning,
    ``experiment=finetune_quantized``): a finetuned model replaces its plain one in the
    curves, the quality ladder and as the default, for as long as the plain model is the one
    it was finetuned from (its frozen encoder); the plain one is kept as the reference
    (curve ``<curve>_plain``) and so that its files still decode."""
    return _finetuned_pairs(manifest(models_dir)["models"])


def _finetuned_pairs(models: dict[str, dict]) -> dict[str, str]:
    """:func:`finetuned_versions` of the manifest's ``models`` mapping."""
    out = {}
    for name, entry in models.items():
        source = entry.get("finetuned_from") or {}
        plain = models.get(source.get("model"))
        if plain and not entry.get("legacy") and plain["fingerprint"] == source.get("fingerprint"):
            out[source["model"]] = name
    return out


def _current(models_dir: Path | None = None) -> dict[str, dict]:
    """{name: entry} of the models in use, each with the curve it is on now: not legacy,
    and not a finetune of an earlier version of its plain model."""
    models = manifest(models_dir)["models"]
    replaced = _finetuned_pairs(models)
    current = set(replaced.values())
    return {n: {**e, "curve": e.get("curve", names.OURS) + ("_plain" if n in replaced else "")}
            for n, e in models.items()
            if not e.get("legacy") and (not e.get("finetuned_from") or n in current)}  # fmt: skip


def default_model() -> Path | None:
    m = manifest()
    if not m.get("default"):
        return None
    return model_path(finetuned_versions().get(m["default"], m["default"]))


def model_for_fingerprint(fingerprint: bytes) -> Path | None:
    for entry in manifest()["models"].values():
        if entry["fingerprint"] == fingerprint.hex():
            return MODELS_DIR / entry["file"]
    return None


def all_models() -> list[Path]:
    """Every bundled model, in order of target bitrate."""
    entries = sorted(manifest()["models"].values(), key=lambda e: e.get("target_bpp", 0))
    return [MODELS_DIR / e["file"] for e in entries]


def curves() -> dict[str, list[Path]]:
    """The current models by RD curve (``learned``: RGB; ``learned_ycbcr``; ``learned_gan``;
    ``learned_plain``, ``learned_ycbcr_plain``: the models that a finetuned one replaces), each in order of
    target bitrate. Legacy models (kept so that their files still decode) are left out."""
    out: dict[str, list[Path]] = {}
    for e in sorted(_current().values(), key=lambda e: e.get("target_bpp", 0)):
        out.setdefault(e["curve"], []).append(MODELS_DIR / e["file"])
    return out


def quality_ladder() -> list[str]:
    """Names of the models of one RD curve, lowest rate first: ``rtaic compress --quality N``
    picks the N-th (1-based). The curve is the manifest's ``ladder`` when it names one (the
    default model can sit outside it: a fast model kept for decode speed), else the default
    model's (the YCbCr models since they measured smaller files than the RGB ones in RGB
    too), else the RGB models."""
    models = _current()
    man = manifest()
    family = man.get("ladder")
    if not family:
        default = _finetuned_pairs(man["models"]).get(man.get("default"), man.get("default"))
        family = models[default]["curve"] if default in models else names.OURS
    ladder = [n for n, e in models.items() if e["curve"] == family]
    return sorted(ladder, key=lambda n: models[n].get("target_bpp", 0))


def resolve(model: str) -> Path:
    """A model given by the user: a file path, else the name of a bundled model."""
    path = Path(model)
    if path.is_file() or model not in manifest()["models"]:
        return path
    return model_path(model)
