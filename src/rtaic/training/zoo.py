"""Trains and exports the bundled model zoo (``conf/zoo.yaml``): one command that never idles.

    python -m rtaic.training.zoo train [--only NAME ...] [--hours H] [hydra overrides ...]
    python -m rtaic.training.zoo export [--only NAME ...]
    python -m rtaic.training.zoo status

``train`` runs rounds of ``round_steps`` per member, each a ``train.py`` process in the
member's own folder (``<workdir>/<name>``): the first round starts from the member's
``init`` (or from its bundled export, if the package already ships it: a new machine
continues where the last session stopped), later rounds resume ``last.ckpt`` with the
optimizer. Checkpoints are written at every validation and replaced atomically, so the
process can be killed at any time and loses at most one validation interval.

``export`` writes each member's latest weights into ``rtaic/models`` (``rtaic export``:
codec only) and records in the manifest its steps over all sessions, its recipe, the
latest validation numbers and the rounds it trained. Run from the project root (where
``train.py`` and ``conf/`` are); extra hydra overrides (e.g. ``data.root=...``) go to
every round.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from omegaconf import OmegaConf

from rtaic import zoo
from rtaic.evaluation import names

CONFIG = Path("conf/zoo.yaml")


@dataclass
class Member:
    name: str
    overrides: list[str]
    init: str | None
    steps: int
    start_after: int = 0
    round_steps: int = 1000
    export: bool = True  # False: a recipe being compared, not shipped
    folder: Path = field(default=Path("."))
    models_dir: Path = zoo.MODELS_DIR  # where the bundled exports live
    export_as: str | None = None  # the bundled model's name, when not the member's own
    finetune_of: str | None = None  # quantization-aware finetuning of this bundled model
    curve: str | None = None  # its RD curve, when not its colour space's (e.g. the fast default)

    def parent_fingerprint(self) -> str | None:
        """The bundled fingerprint of the model a finetune starts from (None: not bundled)."""
        entry = zoo.manifest(self.models_dir)["models"].get(self.finetune_of or "")
        return entry["fingerprint"] if entry else None

    def stale(self) -> bool:
        """A finetune whose local run froze another encoder than the bundled plain model's
        (the plain model was exported anew since): its weights no longer pair with it."""
        mark = self.folder / "parent_fingerprint"
        return bool(self.finetune_of) and mark.is_file() and mark.read_text() != self.parent_fingerprint()

    @property
    def product(self) -> str:
        """The name it is shipped under (a new recipe can replace a model, name kept)."""
        return self.export_as or self.name

    def owns(self, entry: dict) -> bool:
        """Whether a manifest entry under this member's name is its own export (entries
        written before members were recorded belong to the member of that name)."""
        return entry.get("member", self.product) == self.name

    def bundled_entry(self) -> dict | None:
        """The manifest entry of this member's own earlier export (previous sessions); None
        when the package ships none or ships another recipe under the name."""
        entry = zoo.manifest(self.models_dir)["models"].get(self.product)
        if entry and self.finetune_of:  # a finetune continues only on the same frozen encoder
            made_from = entry.get("finetuned_from") or {}
            if made_from.get("fingerprint") != self.parent_fingerprint():
                return None
        return entry if entry and self.owns(entry) else None

    @property
    def last(self) -> Path:
        return self.folder / "checkpoints" / "last.ckpt"

    @property
    def history_file(self) -> Path:
        return self.folder / "history.json"

    def history(self) -> list[dict]:
        return json.loads(self.history_file.read_text()) if self.history_file.is_file() else []

    def bundled_steps(self) -> int:
        """Steps the local run started from: those of the bundled export of this member
        (previous sessions) when the run began, fixed then so that exporting midway does
        not count them twice."""
        base = self.folder / "base_steps"
        if base.is_file():
            return int(base.read_text())
        entry = self.bundled_entry()
        return int(entry.get("steps", 0)) if entry else 0

    def set_aside_if_stale(self) -> None:
        """Moves a stale finetune's run aside, so that it starts again from the new plain model."""
        if self.stale():
            aside = self.folder.with_name(f"{self.folder.name}.stale-{datetime.now():%Y%m%d-%H%M%S}")
            self.folder.rename(aside)
            print(f"rtaic zoo: {self.name}: {self.finetune_of} was exported anew; the old run is in {aside}")

    def begin(self) -> None:
        if not self.last.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / "base_steps").write_text(str(self.bundled_steps()))
            if self.finetune_of:
                (self.folder / "parent_fingerprint").write_text(self.parent_fingerprint() or "")

    def run_steps(self) -> int:
        """Steps of the current local run (0 without a checkpoint)."""
        if not self.last.is_file():
            return 0
        return int(torch.load(self.last, map_location="cpu", weights_only=False)["global_step"])

    def total_steps(self) -> int:
        return self.bundled_steps() + self.run_steps()


def _merge_overrides(common: list[str], own: list[str]) -> list[str]:
    """The common overrides then the member's own; a key the member sets itself (e.g.
    ``model=rtaic_medium`` over the common ``model=rtaic_small``) replaces the common one,
    since Hydra refuses a config group given twice."""
    keys = {o.split("=", 1)[0] for o in own}
    return [o for o in common if o.split("=", 1)[0] not in keys] + list(own)


def load_members(config: Path = CONFIG, models_dir: Path = zoo.MODELS_DIR) -> tuple[dict, list[Member]]:
    config = Path(config)
    if not config.is_file():
        raise SystemExit(f"rtaic zoo: {config} not found; run from the project root")
    cfg = OmegaConf.to_container(OmegaConf.load(config), resolve=True)
    workdir = Path(cfg["workdir"])
    members = [
        Member(name, _merge_overrides(cfg.get("common", []), m["overrides"]), m.get("init"),
               int(m["steps"]), int(m.get("start_after", 0)),
               int(m.get("round_steps", cfg["round_steps"])), bool(m.get("export", True)),
               workdir / name, Path(models_dir), m.get("export_as"), m.get("finetune_of"),
               m.get("curve"))  # fmt: skip
        for name, m in cfg["members"].items()
    ]
    return cfg, members


def _source(member: Member, by_name: dict[str, Member]) -> str | None:
    """The checkpoint a member's first local round starts from; None: wait."""
    if member.bundled_entry() is not None:  # a previous session's export
        return str(zoo.model_path(member.product, member.models_dir))
    if member.finetune_of:  # the bundled plain model, once there is one
        if member.parent_fingerprint() is None:
            return None
        return str(zoo.model_path(member.finetune_of, member.models_dir))
    if member.init is None:
        return ""
    kind, _, name = member.init.partition(":")
    if kind == "bundled":
        return str(zoo.model_path(name, member.models_dir))
    if kind == "member":
        parent = by_name[name]
        if parent.total_steps() < member.start_after:
            return None
        if parent.last.is_file():
            return str(parent.last)
        # a new machine: the parent's export, shipped under its product name
        return str(zoo.model_path(parent.product, member.models_dir)) if parent.bundled_entry() else None
    raise SystemExit(f"rtaic zoo: {member.name}: bad init {member.init!r}")


def round_command(member: Member, cfg: dict, source: str | None, extra: list[str],
                  anneal: bool = False, round_steps: int | None = None) -> list[str]:  # fmt: skip
    done = member.run_steps()
    todo = min(round_steps or member.round_steps, member.steps - member.total_steps())
    cmd = [sys.executable, "train.py", *member.overrides, *extra,
           f"hydra.run.dir={member.folder}", f"task_name=zoo_{member.name}",
           f"trainer.max_steps={done + todo}", f"trainer.val_check_interval={cfg['val_check_interval']}",
           "trainer.enable_progress_bar=false"]  # fmt: skip
    if member.last.is_file():
        cmd.append(f"ckpt_path={member.last}")
    if source and (member.finetune_of or not member.last.is_file()):
        cmd.append(f"init_from='{source}'")  # a finetune reads its architecture there on resume too
    if anneal and not member.finetune_of:  # the whole round at lr x lr_gamma (at once); a
        # finetune keeps its own short schedule
        cmd.append(f"model.lr_milestones=[{done}]")
    return cmd


def _next_member(members: list[Member], args, skip: set[str], after: str | None) -> tuple[Member, str] | None:
    """The next member (round robin, after the last one started) that can train a round."""
    by_name = {m.name: m for m in members}
    names = [m.name for m in members]
    first = (names.index(after) + 1) if after in names else 0
    for m in (by_name[n] for n in names[first:] + names[:first]):
        if m.name not in skip and not (args.only and m.name not in args.only):
            m.set_aside_if_stale()
        if (args.only and m.name not in args.only) or m.name in skip or m.total_steps() >= m.steps:
            continue
        source = _source(m, by_name)
        if source is not None:
            return m, source
    return None


def train(args: argparse.Namespace) -> None:
    """Rounds until every member is done or ``--hours`` have passed, or until a file
    ``STOP`` appears in the workdir (running rounds finish and are recorded; the runner
    removes nothing, so delete ``STOP`` before the next start).

    ``--anneal`` gives each member one round at the decayed learning rate and stops: the
    last round before an export, since the models are far from converged and the
    learning rate is otherwise never lowered.
    ``--parallel N`` trains N members at once with cpu_count / N torch threads each: on a
    small CPU two one-thread processes do more steps in all than one two-thread process
    (whose threads also stall whenever anything else runs), at half the speed each.
    """
    deadline = time.time() + args.hours * 3600 if args.hours else None
    env = dict(os.environ)
    if args.parallel > 1:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.parallel))
    running: dict[str, tuple[subprocess.Popen, Member, list[str], int, float]] = {}
    failed: set[str] = set()
    annealed: set[str] = set()  # with --anneal: one round per member
    last = None
    last_good = None
    while True:
        for name, (proc, m, cmd, start, t0) in list(running.items()):
            rc = proc.poll()
            if rc is None:
                continue
            del running[name]
            if rc != 0:
                failed.add(name)
                print(f"rtaic zoo: {name}: round failed (exit {rc}), not retried in this run: {shlex.join(cmd)}", flush=True)
                continue
            history = m.history() + [{
                "from_step": m.bundled_steps() + start, "to_step": m.total_steps(),
                "minutes": round((time.time() - t0) / 60, 1), "ended": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": shlex.join(cmd[1:]), "val": _val(m.last)}]  # fmt: skip
            m.history_file.write_text(json.dumps(history, indent=1))
        try:  # read every time: recipes can be added or changed while the zoo trains
            cfg, members = load_members(args.config, args.models_dir)
        except Exception as e:  # e.g. read while an editor was writing it: keep the last good one
            print(f"rtaic zoo: {args.config} unreadable, keeping the recipes read before ({e})", flush=True)
            if last_good is None:
                raise
            cfg, members = last_good
        last_good = cfg, members
        stop = Path(cfg["workdir"]) / "STOP"
        open_time = (deadline is None or time.time() < deadline) and not stop.exists()
        if open_time and len(running) < args.parallel:
            found = _next_member(members, args, failed | set(running) | annealed, last)
            if found is not None:
                m, source = found
                m.begin()
                cmd = round_command(m, cfg, source, args.overrides, args.anneal, args.round_steps)
                if args.anneal:
                    annealed.add(m.name)
                target = int(next(c for c in cmd if c.startswith("trainer.max_steps=")).split("=")[1])
                print(f"[zoo {datetime.now():%H:%M}] {m.name}: steps {m.total_steps()} -> {m.bundled_steps() + target}",
                      flush=True)  # fmt: skip
                running[m.name] = (subprocess.Popen(cmd, env=env), m, cmd, m.run_steps(), time.time())
                last = m.name
                continue
        if not running:
            print("[zoo] done: " + ("time is up or STOP" if not open_time else
                                     "every member has reached its steps, waits for its parent or failed"))  # fmt: skip
            if failed:
                raise SystemExit(f"rtaic zoo: failed rounds: {sorted(failed)}")
            return
        time.sleep(1)


def _same_encoder(a: Path, b: Path) -> bool:
    """Whether two checkpoints (training or exported) hold bit-identical encoders."""
    from rtaic.checkpoint import load_networks

    ea, eb = (load_networks(p).autoencoder.encoder.state_dict() for p in (a, b))
    return ea.keys() == eb.keys() and all(torch.equal(ea[k], eb[k]) for k in ea)


def _val(path: Path) -> dict:
    if not path.is_file():
        return {}
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return {k.removeprefix("val/"): round(v, 4) for k, v in ckpt.get("rtaic_val", {}).items()}


def export(args: argparse.Namespace) -> None:
    from rtaic.checkpoint import export_checkpoint
    from rtaic.codec import model_fingerprint

    cfg, members = load_members(args.config, args.models_dir)
    models_dir = Path(args.models_dir)
    man = zoo.manifest(models_dir)
    for m in members:
        if (args.only and m.name not in args.only) or not m.last.is_file() or not m.export:
            continue
        entry = man["models"].get(m.product, {})
        if entry and not m.owns(entry):  # a new recipe replaces the shipped model
            entry = {"replaced": entry.get("replaced", []) + [{k: entry.get(k) for k in
                     ("member", "fingerprint", "steps", "recipe", "val") if k in entry}]}  # fmt: skip
        file = f"{m.product}.ckpt"
        if m.finetune_of and not _same_encoder(m.last, zoo.model_path(m.finetune_of, models_dir)):
            print(f"rtaic zoo: {m.name}: not exported, its encoder is no longer {m.finetune_of}'s "
                  "(that model was exported anew): train it again")  # fmt: skip
            continue
        nets = export_checkpoint(m.last, models_dir / file)
        arch = nets.autoencoder.architecture
        steps = m.total_steps()
        entry.update({
            "file": file, "fingerprint": model_fingerprint(nets).hex(),
            "member": m.name,
            "architecture": _architecture_name(m, man, arch.patch),
            "target_bpp": float(next(o.split("=")[1] for o in m.overrides if o.startswith("target_bpp="))),
            "curve": m.curve or (names.curve("gan") if "experiment=gan" in m.overrides else
                                 names.curve("ycbcr") if arch.color_space == "ycbcr" else names.curve()),
            "color_space": arch.color_space, "latent_channels": arch.latent_channels, "steps": steps,
            "recipe": {"init": m.init, "overrides": m.overrides},
            "val": _val(m.last),
            "history": entry.get("history", []) + [h for h in m.history() if h["from_step"] >= entry.get("steps", 0)],
        })  # fmt: skip
        if m.finetune_of:
            entry["recipe"]["finetune_of"] = m.finetune_of
            entry["finetuned_from"] = {"model": m.finetune_of, "fingerprint": m.parent_fingerprint()}
        man["models"][m.product] = entry
        print(f"exported {m.name} as {m.product}: {steps} steps, val {entry['val']}")
    if cfg.get("default") in man["models"]:
        man["default"] = cfg["default"]
    if cfg.get("ladder"):
        man["ladder"] = cfg["ladder"]
    (models_dir / zoo.MANIFEST.name).write_text(json.dumps(man, indent=2) + "\n")


def _architecture_name(member: Member, man: dict, patch: bool) -> str:
    """The config name of a member's architecture; a finetune has its plain model's (it takes
    the architecture from that checkpoint, whatever its own overrides say)."""
    if member.finetune_of and man["models"].get(member.finetune_of, {}).get("architecture"):
        return man["models"][member.finetune_of]["architecture"]
    name = next((o.split("=")[1] for o in member.overrides if o.startswith("model=")), "rtaic")
    return name + ("+patch" if patch else "")


def status(args: argparse.Namespace) -> None:
    _, members = load_members(args.config, args.models_dir)
    for m in members:
        print(f"{m.name:14s} steps {m.total_steps():6d} / {m.steps} (bundled {m.bundled_steps()}, "
              f"this run {m.run_steps()})  val {_val(m.last)}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m rtaic.training.zoo", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="start or resume every member, round by round")
    t.add_argument("--only", nargs="*", help="members to train (default: all)")
    t.add_argument("--hours", type=float, help="stop starting rounds after this long")
    t.add_argument("--parallel", type=int, default=1, help="members trained at once (default 1)")
    t.add_argument("--round-steps", type=int, help="steps per round for every member (e.g. a short --anneal)")
    t.add_argument("--anneal", action="store_true",
                   help="one last round per member at lr x lr_gamma (before an export)")  # fmt: skip
    t.add_argument("overrides", nargs="*", help="hydra overrides for every round (e.g. data.root=...)")
    e = sub.add_parser("export", help="export members into the package and update the manifest")
    e.add_argument("--only", nargs="*")
    sub.add_parser("status", help="steps and latest validation of each member")
    for s in (t, e, sub.choices["status"]):
        s.add_argument("--config", default=str(CONFIG), help="the zoo's recipes (default: %(default)s)")
        s.add_argument("--models-dir", default=str(zoo.MODELS_DIR), help="bundled models (manifest.json)")
    args = p.parse_args(argv)
    if args.command == "train" and args.only:
        # `--only a b key=value` reads the overrides as names: they are overrides
        args.overrides = list(args.overrides) + [o for o in args.only if "=" in o]
        args.only = [o for o in args.only if "=" not in o]
    if getattr(args, "only", None):
        names = {m.name for m in load_members(args.config, args.models_dir)[1]}
        unknown = sorted(set(args.only) - names)
        if unknown:
            p.error(f"--only: no zoo member named {', '.join(unknown)} (members: {', '.join(sorted(names))})")
    {"train": train, "export": export, "status": status}[args.command](args)


if __name__ == "__main__":
    main()
