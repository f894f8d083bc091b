"""PixelCNN++'s network: its autoregressive order and its reach, proven by gradients; shapes; dropout."""

from __future__ import annotations

import pytest
import torch

from pixelcnn_cli.models.pixelcnnpp import net as pixelcnnpp
from pixelcnn_cli.models.pixelcnnpp import PixelCNNPPNet


def tiny(channels: int, classes: int = 0, nr_resnet: int = 1, seed: int = 0) -> PixelCNNPPNet:
    torch.manual_seed(seed)
    model = PixelCNNPPNet(channels, 5, classes, nr_resnet=nr_resnet, nr_filters=4)
    if classes:  # label biases start at zero; make them matter
        for m in model.modules():
            if isinstance(m, torch.nn.Embedding):
                torch.nn.init.normal_(m.weight)
    return model.eval()  # dropout off


def dependencies(model: PixelCNNPPNet, channels: int, height: int, width: int, classes: int = 0,
                 inputs: int = 2) -> torch.Tensor:
    """Bool ``(H*W outputs, C, H, W)``: which input values the output at each pixel (raster index)
    depends on. One output pixel per batch item, the output channels randomly weighted; OR-ed over
    ``inputs`` random inputs (ELU has no dead units, so one would do; two make sure)."""
    n = height * width
    generator = torch.Generator().manual_seed(1)
    seen = torch.zeros(n, channels, height, width, dtype=torch.bool)
    pixel = torch.arange(n)
    for _ in range(inputs):
        x = torch.rand(1, channels, height, width, generator=generator) * 2 - 1
        xb = x.expand(n, -1, -1, -1).clone().requires_grad_(True)
        labels = torch.randint(classes, (1,), generator=generator).expand(n) if classes else None
        out = model(xb, labels)
        weights = torch.randn(out.shape[1], generator=generator)
        picked = out[pixel, :, pixel // width, pixel % width]  # (n, out_channels)
        (grad,) = torch.autograd.grad((picked * weights).sum(), xb)
        seen |= grad != 0
    return seen


def earlier_pixels(height: int, width: int) -> torch.Tensor:
    """Bool ``(H*W, H*W)``: input pixel strictly before output pixel in raster order."""
    n = height * width
    return torch.ones(n, n, dtype=torch.bool).tril(-1)


def future_violations(seen: torch.Tensor) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    n, _, height, width = seen.shape
    bad = (seen.any(1).reshape(n, n) & ~earlier_pixels(height, width)).nonzero().tolist()
    return [(divmod(o, width), divmod(i, width)) for o, i in bad]


def blind_spots(seen: torch.Tensor) -> set[tuple[tuple[int, int], tuple[int, int]]]:
    """(output pixel, earlier input pixel) pairs where some channel of the input is unseen."""
    n, _, height, width = seen.shape
    bad = (~seen.all(1).reshape(n, n) & earlier_pixels(height, width)).nonzero().tolist()
    return {(divmod(o, width), divmod(i, width)) for o, i in bad}


@pytest.mark.parametrize("classes", [0, 10])
@pytest.mark.parametrize("height,width", [(8, 8), (12, 12), (7, 9)])
@pytest.mark.parametrize("channels", [1, 3])
def test_output_never_sees_its_own_pixel_or_later(channels, height, width, classes):
    seen = dependencies(tiny(channels, classes), channels, height, width, classes)
    assert future_violations(seen) == []
    assert not seen[0].any()  # the first pixel sees nothing
    assert seen[1, :, 0, 0].all()  # and the second sees every channel of the first


@pytest.mark.parametrize("nr_resnet", [1, 2, 3])
def test_reach_is_exact(nr_resnet):
    """Every earlier pixel (all channels) of a (reach + 1)-square is seen; one more row and column
    and the odd rows' far ends are not (the row above to the right, the own row to the left)."""
    model = tiny(3, nr_resnet=nr_resnet)
    side = model.reach + 1
    assert model.reach == 4 * nr_resnet + 2
    assert blind_spots(dependencies(model, 3, side, side)) == set()
    side += 1
    seen = dependencies(model, 3, side, side)
    assert future_violations(seen) == []
    far = side - 1
    expected = {((i, 0), (i - 1, far)) for i in range(1, side, 2)} | {((i, far), (i, 0)) for i in range(1, side, 2)}
    assert blind_spots(seen) == expected


def test_8x8_is_seen_whole_from_nr_resnet_2():
    model = tiny(3, classes=10, nr_resnet=2)
    seen = dependencies(model, 3, 8, 8, classes=10)
    assert future_violations(seen) == [] and blind_spots(seen) == set()
    view = seen[4 * 8 + 5]  # the output at (4, 5): rows < 4 and (4, 0..4), every channel, nothing else
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[:4] = True
    expected[4, :5] = True
    assert torch.equal(view, expected.expand(3, -1, -1))
    assert seen[-1].reshape(3, -1)[:, :-1].all()  # the last pixel sees every earlier one


@pytest.mark.parametrize("broken", ["shift_down", "shift_right"])
def test_the_check_catches_a_broken_network(monkeypatch, broken):
    monkeypatch.setattr(pixelcnnpp, broken, lambda x: x)
    seen = dependencies(tiny(1), 1, 8, 8)
    bad = future_violations(seen)
    assert bad, f"{broken} removed, yet no output sees its own pixel or a later one"
    assert any(out == inp for out, inp in bad)  # the own pixel, the worst case


@pytest.mark.parametrize("channels,size,classes", [(1, 28, 0), (1, 28, 10), (3, 32, 10)])
def test_shapes(channels, size, classes):
    model = tiny(channels, classes)
    x = torch.rand(2, channels, size, size) * 2 - 1
    labels = torch.tensor([0, 9]) if classes else None
    out = model(x, labels)
    assert out.shape == (2, 5, size, size)
    assert torch.isfinite(out).all()


def test_labels_matter_and_must_match_the_model():
    model = tiny(1, classes=10)
    x = torch.rand(1, 1, 8, 8).expand(2, -1, -1, -1) * 2 - 1
    out = model(x, torch.tensor([0, 1]))
    assert not torch.allclose(out[0], out[1])
    with pytest.raises(ValueError):
        model(x)
    with pytest.raises(ValueError):
        tiny(1)(x, torch.tensor([0, 1]))


def test_dropout_only_in_train_mode():
    model = tiny(3)
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_channels_last_gives_the_same_output():
    model = tiny(3)
    x = torch.rand(2, 3, 12, 12) * 2 - 1
    with torch.no_grad():
        plain = model(x)
        model = model.to(memory_format=torch.channels_last)
        fast = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(fast, plain)


def test_the_shared_elu_is_torchs_elu_with_its_gradient():
    """``shifts.elu`` (through ``exp``, not ``expm1``) gives ELU's values within a rounding, the
    exact gradient, and ELU's answers at the edges; ``concat_elu`` is it on both signs."""
    from torch.nn import functional as F

    from pixelcnn_cli.models.shifts import concat_elu, elu

    x = torch.randn(4, 6, 5, 5, generator=torch.Generator().manual_seed(0)) * 3
    torch.testing.assert_close(elu(x), F.elu(x), rtol=0, atol=1.2e-7)
    assert torch.autograd.gradcheck(elu, (x[:1, :2].double().requires_grad_(),))
    edges = torch.tensor([float("nan"), float("inf"), -float("inf"), -200.0, 0.0, 50.0])
    assert elu(edges)[0].isnan() and elu(edges)[1:].tolist() == [float("inf"), -1.0, -1.0, 0.0, 50.0]
    torch.testing.assert_close(concat_elu(x), F.elu(torch.cat([x, -x], dim=1)), rtol=0, atol=1.2e-7)
    with torch.no_grad():  # the cached samplers call it without autograd
        torch.testing.assert_close(elu(x), F.elu(x), rtol=0, atol=1.2e-7)
    low = x.bfloat16()  # bf16 (and GPUs) keep torch's own
    assert torch.equal(elu(low), F.elu(low))
