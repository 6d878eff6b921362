"""Warm starts across rates and designs (the zoo's rate ladder) and kill-safe checkpoints."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from rtaic.nn.autoencoder import Architecture, Autoencoder
from rtaic.training.checkpointing import AtomicModelCheckpoint
from rtaic.training.runner import warm_start_state

BASE = dict(channels=(4, 8, 8), align_channels=8, latent_stride_log2=3)


def _state(latent: int, lowpass: bool, seed: int) -> tuple[Autoencoder, dict]:
    torch.manual_seed(seed)
    ae = Autoencoder(Architecture(**BASE, latent_channels=latent, lowpass=lowpass))
    return ae, {f"autoencoder.{k}": v for k, v in ae.state_dict().items()}


def _load(ae: Autoencoder, state: dict) -> Autoencoder:
    ae.load_state_dict({k.removeprefix("autoencoder."): v for k, v in state.items()})
    return ae.eval()


@pytest.mark.parametrize("source_lowpass", [False, True])
def test_a_wider_latent_starts_as_the_narrower_model(source_lowpass):
    """Up the ladder (more latent channels, low-pass path added): the new model computes
    exactly what its source computed, whatever its fresh channels hold."""
    src, src_state = _state(5, source_lowpass, seed=0)
    dst, dst_state = _state(9, True, seed=1)
    state, partial = warm_start_state(src_state, dst_state)
    dst = _load(dst, state)
    x = torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(dst(x).x_hat, src.eval()(x).x_hat)
        torch.testing.assert_close(dst.encode(x)[:, :5], src.encode(x))
    assert "autoencoder.encoder.joint.3.weight" in partial  # 5 of 9 output channels copied
    assert ("autoencoder.decoder.lowpass.bias" in partial) is not source_lowpass  # zero when new
    # the fresh latent channels keep their initialisation (they must be able to learn)
    assert torch.equal(state["autoencoder.encoder.joint.3.weight"][5:], dst_state["autoencoder.encoder.joint.3.weight"][5:])


def test_a_narrower_latent_keeps_the_channels_the_decoder_reads_most_and_every_shared_layer():
    src, src_state = _state(9, True, seed=0)
    read = src_state["autoencoder.decoder.joint.0.weight"]
    for c, scale in ((1, 50.0), (4, 40.0), (6, 30.0), (7, 20.0)):  # the channels in use
        read[:, c] *= scale
    dst, dst_state = _state(4, True, seed=1)
    state, partial = warm_start_state(src_state, dst_state)
    kept = torch.tensor([1, 4, 6, 7])
    for name, value in state.items():
        if name in partial:
            s = src_state[name]
            d = next(i for i in range(s.dim()) if s.shape[i] != value.shape[i])
            assert torch.equal(value, s.index_select(d, kept))
        else:
            assert torch.equal(value, src_state[name])
    # the kept channels decode as before when the others are silent
    src.load_state_dict({k.removeprefix("autoencoder."): v for k, v in src_state.items()})
    dst = _load(dst, state)
    q = torch.zeros(1, 9, 3, 4)
    q[:, kept] = torch.rand(1, 4, 3, 4)
    with torch.no_grad():
        torch.testing.assert_close(dst.decode(q[:, kept], (24, 32)), src.eval().decode(q, (24, 32)))
    assert set(partial) == {
        "autoencoder.encoder.joint.3.weight", "autoencoder.encoder.joint.3.bias",
        "autoencoder.encoder.lowpass.weight", "autoencoder.encoder.lowpass.bias",
        "autoencoder.decoder.joint.0.weight", "autoencoder.decoder.lowpass.weight"}


def test_a_context_model_of_another_width_is_not_copied_in_pieces():
    source = {"context_model.logits": torch.zeros(10)}
    target = {"context_model.logits": torch.ones(14)}
    state, partial = warm_start_state(source, target)
    assert torch.equal(state["context_model.logits"], torch.ones(14)) and partial == ["context_model.logits"]


class _Trainer:
    """What ModelCheckpoint._save_checkpoint needs of a trainer; writes half a file and
    dies when told to, as a process killed during the write would leave it."""

    is_global_zero = True
    loggers: list = []
    global_step = 7

    def __init__(self, die: bool):
        self.die = die
        self.strategy = type("S", (), {"barrier": staticmethod(lambda name=None: None)})()

    def save_checkpoint(self, path, weights_only=False):
        with open(path, "wb") as f:
            f.write(b"half a checkp")
            if self.die:
                raise KeyboardInterrupt
            f.write(b"oint")


def test_a_checkpoint_write_that_dies_leaves_the_previous_file(tmp_path):
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"previous")
    cb = AtomicModelCheckpoint(dirpath=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        cb._save_checkpoint(_Trainer(die=True), str(target))
    assert target.read_bytes() == b"previous"
    cb._save_checkpoint(_Trainer(die=False), str(target))
    assert target.read_bytes() == b"half a checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # the dead write's part renamed over
    assert cb._last_checkpoint_saved == str(target)


def test_widening_by_duplicating_the_most_read_channels_keeps_the_function_and_the_latent():
    src, src_state = _state(5, True, seed=0)
    src_state["autoencoder.decoder.joint.0.weight"][:, 3] *= 10.0  # channel 3 is read most
    src.load_state_dict({k.removeprefix("autoencoder."): v for k, v in src_state.items()})
    dst, dst_state = _state(8, True, seed=1)
    state, _ = warm_start_state(src_state, dst_state, widen="duplicate")
    enc = state["autoencoder.encoder.joint.3.weight"]
    # the first copy (channel 5) is of channel 3, up to the symmetry-breaking noise
    assert torch.allclose(enc[5], src_state["autoencoder.encoder.joint.3.weight"][3], rtol=0.1, atol=0.05)
    assert not torch.equal(enc[5], src_state["autoencoder.encoder.joint.3.weight"][3])
    read = state["autoencoder.decoder.joint.0.weight"]
    torch.testing.assert_close(read[:, 3] + read[:, 5], src_state["autoencoder.decoder.joint.0.weight"][:, 3])
    dst = _load(dst, state)
    x = torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        y, y_src = dst.encode(x), src.eval().encode(x)
        torch.testing.assert_close(y[:, :5], y_src)
        # decoding with the copies' q set equal to their originals' gives the source's output
        q = dst.encode(x)
        q[:, 5:] = q[:, [3, *[int(i) for i in src_state["autoencoder.decoder.joint.0.weight"].transpose(0, 1).flatten(1).norm(dim=1).argsort(descending=True)[1:3]]]]
        torch.testing.assert_close(dst.decode(q, (40, 56)), src.decode(y_src, (40, 56)))
    with pytest.raises(ValueError):
        warm_start_state(src_state, dst_state, widen="bogus")


def test_a_run_that_stops_between_validations_keeps_its_last_step(train_cfg, tmp_path):
    from rtaic.training.runner import train

    metrics = train(train_cfg(["trainer.max_steps=5", "trainer.val_check_interval=2"]))
    last = torch.load(metrics["last_checkpoint"], weights_only=False)
    assert last["global_step"] == 5  # validations at 2 and 4 only
    assert torch.load(metrics["best_checkpoint"], weights_only=False)["global_step"] in (2, 4)


def test_a_wider_design_starts_as_the_source_and_its_fresh_channels_can_learn():
    """Widening every scale, the alignment width and the latent at once (small -> a wider
    architecture): the new model computes what the source did, including the transposed
    convolutions whose input channels are their first dimension."""
    torch.manual_seed(0)
    src = Autoencoder(Architecture(channels=(4, 8, 8), align_channels=8, latent_channels=5,
                                   latent_stride_log2=2, lowpass=True))  # fmt: skip
    torch.manual_seed(1)
    dst = Autoencoder(Architecture(channels=(6, 12, 10), align_channels=16, latent_channels=7,
                                   latent_stride_log2=2, lowpass=True))  # fmt: skip
    transposed = {f"autoencoder.{n}.weight" for n, m in dst.named_modules() if isinstance(m, torch.nn.ConvTranspose2d)}
    assert transposed  # the decoder's upsamplers and the coarse scales' alignment
    src_state = {f"autoencoder.{k}": v for k, v in src.state_dict().items()}
    dst_state = {f"autoencoder.{k}": v.clone() for k, v in dst.state_dict().items()}
    state, partial = warm_start_state(src_state, dst_state, transposed=transposed)
    dst = _load(dst, state)
    x = torch.rand(2, 3, 24, 40)
    with torch.no_grad():
        torch.testing.assert_close(dst(x).x_hat, src.eval()(x).x_hat)
    # without knowing which weights are transposed the function is not preserved
    wrong, _ = warm_start_state(src_state, dst_state)
    with torch.no_grad():
        assert not torch.allclose(_load(dst, wrong)(x).x_hat, src(x).x_hat, atol=1e-4)
    # fresh output channels keep their (non-zero) initialisation
    w = state["autoencoder.encoder.extract.0.0.weight"]
    assert torch.equal(w[4:], dst_state["autoencoder.encoder.extract.0.0.weight"][4:]) and w[4:].abs().sum() > 0
    # and the gradient reaches the weights that read them
    dst.train()
    out = dst(x).x_hat.sum()
    out.backward()
    reader = dict(dst.named_parameters())["decoder.out.weight"]
    assert reader.grad[:, 4:].abs().sum() > 0


@pytest.mark.parametrize("widen", ["zero", "duplicate"])
def test_the_low_pass_path_becomes_its_patch_form_exactly(widen):
    """A model with the low-pass path warm-starts one whose linear path is the learned patch
    transform (Architecture.patch) computing the same image, up the ladder too (there the
    copies' levels differ from their originals' by a little noise)."""
    src, src_state = _state(5, True, seed=0)
    torch.manual_seed(1)
    dst = Autoencoder(Architecture(**BASE, latent_channels=5 if widen == "zero" else 8, lowpass=True, patch=True))
    transposed = {f"autoencoder.{n}.weight" for n, m in dst.named_modules() if isinstance(m, torch.nn.ConvTranspose2d)}
    assert "autoencoder.decoder.lowpass.weight" in transposed
    dst_state = {f"autoencoder.{k}": v.clone() for k, v in dst.state_dict().items()}
    state, _ = warm_start_state(src_state, dst_state, widen=widen, transposed=transposed)
    dst = _load(dst, state)
    x = torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(dst.encoder.linear(x)[:, :5], src.eval().encoder.linear(x))
        if widen == "zero":
            torch.testing.assert_close(dst(x).x_hat, src(x).x_hat)
        else:
            assert (dst(x).x_hat - src(x).x_hat).abs().mean() < 0.01


@pytest.mark.parametrize("patch", [False, True])
def test_an_rgb_model_rewritten_for_ycbcr_computes_the_same_images(patch):
    """state_in_color_space folds the colour map into the layers that read and paint the
    image: the YCbCr model decodes any latent to the RGB model's pixels, encodes the same
    latent away from the border (where zero padding reads another colour), and the map
    back to RGB restores the weights."""
    from rtaic.training.runner import state_in_color_space

    torch.manual_seed(0)
    arch = dict(BASE, latent_channels=5, lowpass=True, patch=patch)
    rgb = Autoencoder(Architecture(**arch)).eval()
    for p in rgb.parameters():  # biases away from zero, so that a wrong offset shows
        p.data.add_(0.05 * torch.randn_like(p))
    state = {f"autoencoder.{k}": v for k, v in rgb.state_dict().items()}
    converted = state_in_color_space(state, "rgb", "ycbcr")
    ycc = _load(Autoencoder(Architecture(**arch, color_space="ycbcr")), converted)
    x = torch.rand(2, 3, 96, 112)
    with torch.no_grad():
        q = torch.round(torch.rand(2, 5, 12, 14) * 62 - 31) / 32
        torch.testing.assert_close(ycc.decode(q, (96, 112)), rgb.decode(q, (96, 112)), atol=1e-5, rtol=1e-5)
        y_rgb, y_ycc = rgb.encode(x), ycc.encode(x)
        # the padding's reach: one latent cell, then two 3x3 convs of the joint layers
        torch.testing.assert_close(y_ycc[..., 3:-3, 3:-3], y_rgb[..., 3:-3, 3:-3], atol=1e-5, rtol=1e-5)
        assert (y_ycc - y_rgb).abs().max() > 1e-4  # the border does differ: the test can see it
    back = state_in_color_space(converted, "ycbcr", "rgb")
    for name, tensor in state.items():
        torch.testing.assert_close(back[name], tensor, atol=1e-6, rtol=1e-5)


def test_a_run_started_again_from_its_export_keeps_its_acr_coefficient(train_cfg, tmp_path):
    """The zoo on a new machine starts a member from its bundled export: the ACR weight
    must continue from the trained value, not restart at 1.0 (which collapses the rate)."""
    from rtaic.checkpoint import export_checkpoint, load_networks
    from rtaic.codec import model_fingerprint
    from rtaic.training.runner import train

    metrics = train(train_cfg(["trainer.max_steps=3", "trainer.val_check_interval=3"]))
    last = torch.load(metrics["last_checkpoint"], weights_only=False)
    last["state_dict"]["acr_alpha"] = torch.tensor(0.0123)
    torch.save(last, tmp_path / "trained.ckpt")
    exported = export_checkpoint(tmp_path / "trained.ckpt", tmp_path / "export.ckpt")
    # the codec reads the export as before
    assert model_fingerprint(load_networks(tmp_path / "export.ckpt")) == model_fingerprint(exported)
    assert load_networks(tmp_path / "export.ckpt").acr_alpha == pytest.approx(0.0123)  # for refinement

    from conftest import module_from_config
    from rtaic.training.runner import load_warm_start

    model = module_from_config(tmp_path)
    assert float(model.acr_alpha) == 1.0
    load_warm_start(model, str(tmp_path / "export.ckpt"))
    assert float(model.acr_alpha) == pytest.approx(0.0123)


class _WorseEveryTime(pl.LightningModule):
    """A score that only falls: Lightning's top-k file stays at the first validation."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, _):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, _):
        self.log("score", -float(self.global_step))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _ReadLast(pl.Callback):
    """The step of ``last`` as training goes on after each validation (Lightning runs the
    checkpoint callbacks after all others, so it is read at the next batch)."""

    def __init__(self, path):
        self.path, self.steps, self.validated = path, [], False

    def on_validation_end(self, trainer, pl_module):
        self.validated = True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.validated:
            self.steps.append(torch.load(self.path, weights_only=False)["global_step"])
            self.validated = False


def test_last_is_written_at_every_validation_even_when_the_score_stalls(tmp_path):
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 2)), batch_size=2)
    checkpoint = AtomicModelCheckpoint(dirpath=tmp_path, monitor="score", mode="max", save_last=True, save_top_k=1)
    reader = _ReadLast(tmp_path / "last.ckpt")
    trainer = pl.Trainer(max_steps=6, val_check_interval=2, limit_val_batches=1, num_sanity_val_steps=0,
                         callbacks=[checkpoint, reader], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")  # fmt: skip
    trainer.fit(_WorseEveryTime(), data, data)
    assert reader.steps == [2, 4]  # [2, 2] with Lightning's own rule
    assert torch.load(checkpoint.best_model_path, weights_only=False)["global_step"] == 2
