import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rtaic.coding.bitplanes import from_bitplanes, magnitude, to_bitplanes


@settings(max_examples=60, deadline=None)
@given(
    bits=st.integers(2, 9),
    shape=st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(1, 7), st.integers(1, 7)),
    seed=st.integers(0, 2**31 - 1),
)
def test_round_trip_is_exact(bits, shape, seed):
    m = 2 ** (bits - 1) - 1
    g = torch.Generator().manual_seed(seed)
    levels = torch.randint(-m, m + 1, shape, generator=g, dtype=torch.int32)
    planes = to_bitplanes(levels, bits)
    assert planes.shape == (shape[0], bits, *shape[1:])
    assert planes.dtype == torch.uint8 and int(planes.max()) <= 1
    assert torch.equal(from_bitplanes(planes), levels)


def test_layout_is_sign_plus_magnitude_msb_first():
    levels = torch.tensor([[[[5, -3, 0]]]], dtype=torch.int32)  # 6 bits: 5 magnitude planes
    planes = to_bitplanes(levels, 6)[0, :, 0, 0]  # (B, W)
    assert planes[:, 0].tolist() == [0, 0, 1, 0, 1, 0]  # 00101, positive
    assert planes[:, 1].tolist() == [0, 0, 0, 1, 1, 1]  # 00011, negative
    assert planes[:, 2].tolist() == [0, 0, 0, 0, 0, 0]  # zero has sign 0
    assert magnitude(to_bitplanes(levels, 6), upto=3).flatten().tolist() == [1, 0, 0]


def test_out_of_range_levels_are_refused():
    import pytest

    with pytest.raises(ValueError):
        to_bitplanes(torch.tensor([[[[32]]]]), 6)
