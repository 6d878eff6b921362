"""The project's trained models, shipped inside the package (``rtaic/models``).

``manifest.json`` lists them: file, model fingerprint, target bitrate, how they were
trained. ``rtaic compress`` uses the default one when no model is given, and
``rtaic decompress`` finds the model of a file by the fingerprint in its header.
"""

from __future__ import annotations

import json
from pathlib import Path

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


def default_model() -> Path | None:
    m = manifest()
    return model_path(m["default"]) if m.get("default") else None


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
    """The current models by RD curve (``learned``: RGB; ``learned_ycbcr``; ``learned_gan``),
    each in order of target bitrate. Legacy models (kept so that their files still decode)
    are left out."""
    out: dict[str, list[Path]] = {}
    entries = sorted(manifest()["models"].values(), key=lambda e: e.get("target_bpp", 0))
    for e in entries:
        if not e.get("legacy"):
            out.setdefault(e.get("curve", "learned"), []).append(MODELS_DIR / e["file"])
    return out


def quality_ladder() -> list[str]:
    """Names of the RGB models, lowest rate first: ``rtaic compress --quality N`` picks the
    N-th (1-based)."""
    models = manifest()["models"]
    names = [n for n, e in models.items() if not e.get("legacy") and e.get("curve", "learned") == "learned"]
    return sorted(names, key=lambda n: models[n].get("target_bpp", 0))


def resolve(model: str) -> Path:
    """A model given by the user: a file path, else the name of a bundled model."""
    path = Path(model)
    if path.is_file() or model not in manifest()["models"]:
        return path
    return model_path(model)
