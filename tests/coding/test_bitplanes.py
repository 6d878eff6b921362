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


def test_wrong_shapes_are_refused_with_the_shape_in_the_message():
    import pytest

    with pytest.raises(ValueError, match=r"expected \(N, C, H, W\) levels, got shape \(2, 3\)"):
        to_bitplanes(torch.zeros(2, 3, dtype=torch.int32), 4)
    with pytest.raises(ValueError, match=r"exceed the 6-bit range \[-31, 31\]"):
        to_bitplanes(torch.tensor([[[[-32]]]]), 6)
    with pytest.raises(ValueError, match=r"expected \(N, B, C, H, W\) planes, got shape \(1, 4, 2, 2\)"):
        from_bitplanes(torch.zeros(1, 4, 2, 2, dtype=torch.uint8))


def test_levels_of_any_integer_valued_dtype_give_the_same_planes():
    levels = torch.tensor([[[[5, -3, 0], [-7, 7, 1]]]], dtype=torch.int32)
    want = to_bitplanes(levels, 4)
    for dtype in (torch.int64, torch.int16, torch.float32, torch.float64):
        assert torch.equal(to_bitplanes(levels.to(dtype), 4), want), dtype
    assert want.dtype == torch.uint8
