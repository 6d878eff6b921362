import torch

from rtaic.coding.quantize import dequantize, max_level, quantize, quantize_levels


def test_levels_follow_the_papers_formula():
    y = torch.tensor([-0.999, -0.5, -1 / 32, -0.01, 0.0, 0.001, 1 / 32, 0.0313, 0.5, 0.99])
    k = quantize_levels(y, 6)
    expected = torch.ceil(y * 32).clamp(-31, 31).int()
    assert torch.equal(k, expected)
    assert k.tolist() == [-31, -16, -1, 0, 0, 1, 1, 2, 16, 31]


def test_levels_are_clamped_to_the_sign_magnitude_range():
    y = torch.tensor([-5.0, -1.0, 1.0, 5.0])
    for bits in (2, 4, 6, 8):
        k = quantize_levels(y, bits)
        assert int(k.abs().max()) == max_level(bits) == 2 ** (bits - 1) - 1


def test_forward_is_quantized_and_gradient_is_straight_through():
    y = torch.linspace(-0.9, 0.9, 11, requires_grad=True)
    q = quantize(y, 6)
    assert torch.allclose(q, dequantize(quantize_levels(y, 6), 6))
    assert torch.all((q * 32 - torch.round(q * 32)).abs() < 1e-6)
    (q * torch.arange(11.0)).sum().backward()
    assert torch.equal(y.grad, torch.arange(11.0))


def test_levels_are_int32_and_dequantize_divides_by_the_step():
    k = quantize_levels(torch.tensor([-0.3, 0.0, 0.26], dtype=torch.float64), 4)
    assert k.dtype == torch.int32 and k.tolist() == [-2, 0, 3]
    levels = torch.tensor([-31, -3, 0, 1, 31], dtype=torch.int32)
    assert dequantize(levels, 6).tolist() == [-31 / 32, -3 / 32, 0.0, 1 / 32, 31 / 32]
    assert dequantize(levels, 2).tolist() == [-31 / 2, -3 / 2, 0.0, 1 / 2, 31 / 2]
    assert dequantize(levels, 6).dtype == torch.float32
    wide = dequantize(levels, 6, torch.float64)
    assert wide.dtype == torch.float64 and wide.tolist() == [-31 / 32, -3 / 32, 0.0, 1 / 32, 31 / 32]


def test_quantize_keeps_the_latents_dtype():
    for dtype in (torch.bfloat16, torch.float64):
        y = torch.tensor([-0.5, 0.1, 0.7], dtype=dtype)
        q = quantize(y, 4)
        assert q.dtype == dtype
        assert q.tolist() == [-0.5, 0.125, 0.75]
