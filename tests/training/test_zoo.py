"""The zoo workflow end to end on a tiny recipe: rounds, a rate ladder, export, a new session."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import ROOT, TINY_OVERRIDES
from rtaic import zoo
from rtaic.codec import load_codec, model_fingerprint
from rtaic.training import zoo as zoo_runner


def _recipe(tmp_path, steps: int) -> str:
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(images / f"{i}.png")
    common = [o for o in TINY_OVERRIDES if not o.startswith(("trainer.max_steps", "trainer.val_check"))]
    recipe = {
        "workdir": str(tmp_path / "work"),
        "round_steps": 2,
        "val_check_interval": 2,
        "common": common + [f"data.root={images}", "data.val_fraction=0.5"],
        "members": {
            "trunk": {"overrides": ["target_bpp=0.5"], "init": None, "steps": steps},
            "wide": {"overrides": ["target_bpp=1.0"], "init": "member:trunk", "start_after": 2, "steps": 4},
            "tried": {"overrides": ["target_bpp=0.25"], "init": "member:trunk", "start_after": 2, "steps": 2,
                      "export": False},
        },
        "default": "trunk",
    }
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def test_rounds_ladder_export_and_a_new_session_continuing(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    models = tmp_path / "models"
    models.mkdir()
    args = ["--config", _recipe(tmp_path, steps=4), "--models-dir", str(models)]
    zoo_runner.main(["train", "--parallel", "2", *args])
    work = tmp_path / "work"
    for name in ("trunk", "wide"):
        history = json.loads((work / name / "history.json").read_text())
        assert [(h["from_step"], h["to_step"]) for h in history] == [(0, 2), (2, 4)]
        assert torch.load(work / name / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4
    wide = json.loads((work / "wide" / "history.json").read_text())
    assert "init_from=" in wide[0]["command"] and "trunk" in wide[0]["command"]  # the ladder
    assert "ckpt_path=" in wide[1]["command"]  # later rounds resume with the optimizer

    zoo_runner.main(["export", *args])
    manifest = json.loads((models / "manifest.json").read_text())
    assert (work / "tried" / "checkpoints" / "last.ckpt").is_file()  # trained, compared, not shipped
    assert manifest["default"] == "trunk" and set(manifest["models"]) == {"trunk", "wide"}
    entry = manifest["models"]["trunk"]
    assert entry["steps"] == 4 and len(entry["history"]) == 2
    assert {"msssim", "bpp", "ciede2000"} <= set(entry["val"])
    codec = load_codec(models / entry["file"])
    assert model_fingerprint(codec.networks).hex() == entry["fingerprint"]
    assert codec.architecture.lowpass and codec.architecture.latent_channels == round(4 * 0.5 * 64 / 6)
    assert manifest["models"]["wide"]["latent_channels"] == round(4 * 1.0 * 64 / 6)

    # a new machine: no local runs, the package ships the exports; the trunk continues
    shutil.rmtree(work)
    args[1] = _recipe(tmp_path, steps=6)
    zoo_runner.main(["train", "--only", "trunk", *args])
    history = json.loads((work / "trunk" / "history.json").read_text())
    assert [(h["from_step"], h["to_step"]) for h in history] == [(4, 6)]
    assert "init_from=" in history[0]["command"] and str(models / entry["file"]) in history[0]["command"]
    zoo_runner.main(["export", *args])
    entry = json.loads((models / "manifest.json").read_text())["models"]["trunk"]
    assert entry["steps"] == 6 and [h["to_step"] for h in entry["history"]] == [2, 4, 6]

    # the last round before an export: once per member, at the decayed learning rate
    args[1] = _recipe(tmp_path, steps=100)
    zoo_runner.main(["train", "--only", "trunk", "--anneal", "--round-steps", "1", *args])
    history = json.loads((work / "trunk" / "history.json").read_text())
    assert [(h["from_step"], h["to_step"]) for h in history] == [(4, 6), (6, 7)]
    assert "model.lr_milestones=[2]" in history[-1]["command"]  # local run step 2 = total 6
    ckpt = torch.load(work / "trunk" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(3e-4 * 0.2)


def test_overrides_after_only_are_overrides_and_unknown_members_are_refused(tmp_path, monkeypatch):
    """`train --only a key=value` once trained on the default data silently (the override
    was read as a member name)."""
    config = _recipe(tmp_path, steps=4)
    seen = {}
    monkeypatch.setattr(zoo_runner, "train", lambda args: seen.update(vars(args)))
    zoo_runner.main(["train", "--config", config, "--only", "trunk", "data.root=/x", "seed=3"])
    assert seen["only"] == ["trunk"] and seen["overrides"] == ["data.root=/x", "seed=3"]
    with pytest.raises(SystemExit):
        zoo_runner.main(["train", "--config", config, "--only", "trunkk"])


def test_a_new_recipe_replaces_a_shipped_model_under_its_name(tmp_path, monkeypatch):
    """`export_as`: a member of another design (here the patch form of the linear path),
    started as the shipped model, is shipped under that model's name; the manifest keeps
    what it replaced, and its steps are its own."""
    monkeypatch.chdir(ROOT)
    models = tmp_path / "models"
    models.mkdir()
    config = _recipe(tmp_path, steps=2)
    recipe = yaml.safe_load(open(config))
    recipe["members"].pop("wide"), recipe["members"].pop("tried")
    recipe["members"]["trunk_patch"] = {"overrides": ["target_bpp=0.5", "model.architecture.patch=true"],
                                        "init": "member:trunk", "start_after": 2, "steps": 2, "export_as": "trunk"}
    recipe["members"]["trunk"]["export"] = True
    open(config, "w").write(yaml.safe_dump(recipe))
    args = ["--config", config, "--models-dir", str(models)]
    zoo_runner.main(["train", "--only", "trunk", *args])
    zoo_runner.main(["export", *args])  # the first design ships as "trunk"
    old = json.loads((models / "manifest.json").read_text())["models"]["trunk"]
    zoo_runner.main(["train", "--only", "trunk_patch", *args])
    recipe["members"]["trunk"]["export"] = False
    open(config, "w").write(yaml.safe_dump(recipe))
    zoo_runner.main(["export", *args])
    manifest = json.loads((models / "manifest.json").read_text())
    assert set(manifest["models"]) == {"trunk"}
    entry = manifest["models"]["trunk"]
    assert entry["member"] == "trunk_patch" and entry["steps"] == 2 and entry["architecture"].endswith("+patch")
    assert entry["replaced"][0]["fingerprint"] == old["fingerprint"] != entry["fingerprint"]
    codec = load_codec(models / entry["file"])
    assert codec.architecture.patch and model_fingerprint(codec.networks).hex() == entry["fingerprint"]
    # the replaced member's own bundled steps no longer count for it; the new one's do
    _, members = zoo_runner.load_members(config, models)
    by = {m.name: m for m in members}
    assert by["trunk_patch"].bundled_entry()["member"] == "trunk_patch" and by["trunk_patch"].total_steps() == 2
    assert by["trunk"].bundled_entry() is None
    # the replaced design ships on under another name, on its own curve, as the default (a
    # fast model outside the --quality ladder, which the manifest then names)
    recipe["members"]["trunk"].update({"export": True, "export_as": "trunk_fast", "curve": "learned_fast"})
    recipe.update({"default": "trunk_fast", "ladder": "learned"})
    open(config, "w").write(yaml.safe_dump(recipe))
    zoo_runner.main(["export", "--only", "trunk", *args])
    manifest = json.loads((models / "manifest.json").read_text())
    fast = manifest["models"]["trunk_fast"]
    assert fast["member"] == "trunk" and fast["fingerprint"] == old["fingerprint"] and fast["curve"] == "learned_fast"
    assert manifest["models"]["trunk"] == entry and (manifest["default"], manifest["ladder"]) == ("trunk_fast", "learned")
    monkeypatch.setattr(zoo, "MODELS_DIR", models)
    monkeypatch.setattr(zoo, "MANIFEST", models / "manifest.json")
    assert zoo.default_model() == models / "trunk_fast.ckpt" and zoo.quality_ladder() == ["trunk"]
    assert zoo.curves() == {"learned": [models / "trunk.ckpt"], "learned_fast": [models / "trunk_fast.ckpt"]}
    _, members = zoo_runner.load_members(config, models)
    by = {m.name: m for m in members}
    # a new machine (no local runs): a member laddered from trunk_patch starts from its
    # export, which ships under the name "trunk"
    shutil.rmtree(tmp_path / "work")
    child = zoo_runner.Member("child", [], "member:trunk_patch", 2, folder=tmp_path / "work" / "child",
                              models_dir=models)
    assert zoo_runner._source(child, by) == str(models / entry["file"])


def test_a_finetune_stage_pairs_with_its_plain_model_and_follows_it(tmp_path, monkeypatch):
    """`finetune_of`: quantization-aware finetuning of a bundled model (frozen encoder). Its
    export replaces the plain model in the curves and as the default while the plain model
    is the one it froze; when the plain model is exported anew the finetune drops out and
    its next round starts again from the new plain model."""

    monkeypatch.chdir(ROOT)
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setattr(zoo, "MODELS_DIR", models)
    monkeypatch.setattr(zoo, "MANIFEST", models / "manifest.json")
    config = _recipe(tmp_path, steps=2)
    recipe = yaml.safe_load(open(config))
    recipe["members"].pop("tried")
    recipe["members"]["trunk_ft"] = {"finetune_of": "trunk", "init": None, "steps": 2,
                                     "overrides": ["target_bpp=0.5", "experiment=finetune_quantized",
                                                   "model.finetune_rdoq=0.0"]}  # fmt: skip
    open(config, "w").write(yaml.safe_dump(recipe))
    args = ["--config", config, "--models-dir", str(models)]
    zoo_runner.main(["train", "--only", "trunk_ft", *args])  # waits: no plain model bundled yet
    assert not (tmp_path / "work" / "trunk_ft" / "checkpoints" / "last.ckpt").exists()
    zoo_runner.main(["train", "--only", "trunk", "wide", *args])
    zoo_runner.main(["export", *args])
    zoo_runner.main(["train", "--only", "trunk_ft", *args])
    zoo_runner.main(["export", *args])
    manifest = json.loads((models / "manifest.json").read_text())
    plain, tuned = manifest["models"]["trunk"], manifest["models"]["trunk_ft"]
    assert tuned["finetuned_from"] == {"model": "trunk", "fingerprint": plain["fingerprint"]}
    assert tuned["fingerprint"] != plain["fingerprint"] and tuned["steps"] == 2
    assert zoo_runner._same_encoder(models / tuned["file"], models / plain["file"])
    assert zoo.finetuned_versions() == {"trunk": "trunk_ft"}
    assert zoo.default_model() == models / tuned["file"]
    curves = zoo.curves()
    assert curves["learned"] == [models / tuned["file"], models / manifest["models"]["wide"]["file"]]
    assert curves["learned_plain"] == [models / plain["file"]]
    assert zoo.quality_ladder() == ["trunk_ft", "wide"]

    # the plain model trains on and is exported anew: the finetune no longer pairs with it
    recipe["members"]["trunk"]["steps"] = 4
    open(config, "w").write(yaml.safe_dump(recipe))
    zoo_runner.main(["train", "--only", "trunk", *args])
    zoo_runner.main(["export", "--only", "trunk", *args])
    assert zoo.finetuned_versions() == {} and zoo.default_model() == models / plain["file"]
    assert zoo.quality_ladder() == ["trunk", "wide"] and "learned_plain" not in zoo.curves()
    zoo_runner.main(["export", "--only", "trunk_ft", *args])  # refused: another encoder now
    stale = json.loads((models / "manifest.json").read_text())["models"]["trunk_ft"]
    assert stale["fingerprint"] == tuned["fingerprint"]
    zoo_runner.main(["train", "--only", "trunk_ft", *args])  # starts again from the new trunk
    history = json.loads((tmp_path / "work" / "trunk_ft" / "history.json").read_text())
    assert [(h["from_step"], h["to_step"]) for h in history] == [(0, 2)]
    zoo_runner.main(["export", *args])
    assert zoo.finetuned_versions() == {"trunk": "trunk_ft"}
    new = json.loads((models / "manifest.json").read_text())["models"]
    assert zoo_runner._same_encoder(models / new["trunk_ft"]["file"], models / new["trunk"]["file"])


def test_a_finetune_is_listed_with_its_plain_models_architecture():
    """A finetune reads its architecture from the plain checkpoint, so its own overrides
    (the common ``model=rtaic_small``) do not name it."""
    from types import SimpleNamespace

    man = {"models": {"big": {"architecture": "rtaic_medium+patch"}}}
    tuned = SimpleNamespace(finetune_of="big", overrides=["model=rtaic_small", "experiment=finetune_quantized"])
    plain = SimpleNamespace(finetune_of=None, overrides=["model=rtaic_small", "target_bpp=1.0"])
    assert zoo_runner._architecture_name(tuned, man, patch=True) == "rtaic_medium+patch"
    assert zoo_runner._architecture_name(plain, man, patch=False) == "rtaic_small"
