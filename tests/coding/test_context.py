import subprocess
import sys

import numpy as np
import torch

from rtaic.coding.bitplanes import to_bitplanes
from rtaic.coding.context import BitContextModel, code_length_bits, parity_mask


def _planes(n=3, c=4, h=9, w=11, bits=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    levels = (torch.randn(n, c, h, w, generator=g) * 4).round().clamp(-31, 31).int()
    return to_bitplanes(levels, bits)


def _model(c=4, bits=6, seed=1):
    m = BitContextModel(c, bits)
    with torch.no_grad():
        m.logits.copy_(torch.randn(m.num_contexts, generator=torch.Generator().manual_seed(seed)) * 2)
    return m


def test_contexts_use_only_bits_the_decoder_already_has():
    """Changing what the decoder has not decoded yet must not change a group's contexts."""
    model, planes = _model(), _planes()
    odd = parity_mask(planes.shape[-2], planes.shape[-1])
    g = torch.Generator().manual_seed(5)
    for p in range(planes.shape[1]):
        ctx = model.plane_contexts(planes, p)
        scrambled = planes.clone()
        scrambled[:, p + 1 :] = torch.randint(0, 2, scrambled[:, p + 1 :].shape, generator=g).byte()
        cur = scrambled[:, p]
        cur[:, :, odd] = torch.randint(0, 2, cur[:, :, odd].shape, generator=g).byte()
        if p == planes.shape[1] - 1:  # sign plane: only defined where magnitude > 0
            scrambled[:, : p] = planes[:, : p]
        ctx2 = model.plane_contexts(scrambled, p)
        assert torch.equal(ctx[..., ~odd], ctx2[..., ~odd]), f"parity 0 of plane {p} peeks ahead"
        # parity 1 sees plane p at parity 0 (decoded), never its own group or what follows:
        # flip every bit of the group and of the later magnitude planes (the sign plane too:
        # its parity-1 signs must not see each other)
        scrambled = planes.clone()
        scrambled[:, p + 1 : planes.shape[1] - 1] = 1 - scrambled[:, p + 1 : planes.shape[1] - 1]
        cur = scrambled[:, p]
        cur[:, :, odd] = 1 - cur[:, :, odd]
        ctx3 = model.plane_contexts(scrambled, p)
        assert torch.equal(ctx[..., odd], ctx3[..., odd]), f"parity 1 of plane {p} peeks ahead"


def test_sign_contexts_of_parity_1_see_the_parity_0_signs():
    """The check above is not vacuous for the sign plane: its parity-1 contexts do change
    with the (decoded) parity-0 signs of the neighbours."""
    model, planes = _model(), _planes()
    sign = planes.shape[1] - 1
    odd = parity_mask(planes.shape[-2], planes.shape[-1])
    flipped = planes.clone()
    flipped[:, sign, :, ~odd] = 1 - flipped[:, sign, :, ~odd]
    from rtaic.coding.bitplanes import magnitude

    flipped[:, sign] *= (magnitude(planes) > 0).byte()  # signs only where the value is non-zero
    before, after = model.plane_contexts(planes, sign), model.plane_contexts(flipped, sign)
    assert not torch.equal(before[..., odd], after[..., odd])


def test_context_ids_are_in_range_and_informative():
    model, planes = _model(), _planes()
    ids = torch.cat([model.plane_contexts(planes, p).flatten() for p in range(6)])
    assert int(ids.min()) >= 0 and int(ids.max()) < model.num_contexts
    assert len(torch.unique(ids)) > 50


def _probs_per_image(model, planes):
    table = torch.from_numpy(model.probability_table())
    return [torch.stack([table[model.plane_contexts(planes[i : i + 1], p)] for p in range(6)])
            for i in range(planes.shape[0])]


def test_probabilities_identical_across_batch_sizes_and_thread_counts():
    """The probabilities the coder uses (the integer table at each bit's context) and those
    training uses (sigmoid of the logit there) do not depend on the batch or the threads."""
    model, planes = _model(), _planes(n=4)

    def probs(batch_of_one: bool, threads: int):
        torch.set_num_threads(threads)
        table = model.probability_table()
        coder, trained = [], []
        with torch.no_grad():
            for p in range(6):
                if batch_of_one:
                    ctx = torch.cat([model.plane_contexts(planes[i : i + 1], p) for i in range(4)])
                else:
                    ctx = model.plane_contexts(planes, p)
                coder.append(table[ctx.numpy()])
                trained.append(torch.sigmoid(model.logits[ctx]))
        return table, np.stack(coder), torch.stack(trained)

    old = torch.get_num_threads()
    try:
        one = probs(True, 1)
        batched = probs(False, 2)
    finally:
        torch.set_num_threads(old)
    assert np.array_equal(one[0], batched[0])
    assert np.array_equal(one[1], batched[1])
    assert torch.equal(one[2], batched[2])
    assert len(np.unique(one[1])) > 50  # many different probabilities were compared
    # the table is the trained probability in units of 2**-16 (rounded; float32 sigmoid)
    assert np.abs(one[1] / 2**16 - one[2].double().numpy()).max() <= 2**-16
    t1 = model.probability_table()
    assert t1.dtype == np.int64 and t1.min() >= 1 and t1.max() < 2**16


def test_probabilities_identical_in_another_process(tmp_path):
    model, planes = _model(), _planes(n=2)
    torch.save({"state": model.state_dict(), "planes": planes}, tmp_path / "m.pt")
    here = np.concatenate([t.numpy().ravel() for t in _probs_per_image(model, planes)])
    code = f"""
import torch, numpy as np
torch.set_num_threads(1)
from rtaic.coding.context import BitContextModel
d = torch.load({str(tmp_path / 'm.pt')!r})
m = BitContextModel(4, 6); m.load_state_dict(d['state'])
t = torch.from_numpy(m.probability_table())
pl = d['planes']
out = [torch.stack([t[m.plane_contexts(pl[i:i+1], p)] for p in range(6)]) for i in range(2)]
np.save({str(tmp_path / 'p.npy')!r}, np.concatenate([o.numpy().ravel() for o in out]))
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    assert np.array_equal(here, np.load(tmp_path / "p.npy"))


def test_training_estimate_matches_integer_code_length():
    model, planes = _model(), _planes(n=1)
    est = float(model(planes).sum())
    exact = code_length_bits(model.probability_table(), model, planes)
    assert abs(est - exact) / exact < 1e-3


def test_training_reduces_code_length():
    planes = _planes(n=2, seed=3)
    model = BitContextModel(4, 6)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    first = float(model(planes).sum())
    for _ in range(100):
        opt.zero_grad()
        model(planes).sum().backward()
        opt.step()
    assert float(model(planes).sum()) < 0.8 * first
