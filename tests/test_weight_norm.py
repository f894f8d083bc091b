"""PixelCNN++'s weight normalisation and data-dependent initialisation (``--model-option weight_norm=true``):
each layer starts at mean 0 and its init scale on the init batch; the option off is today's network;
checkpoints, resume, the cached sampler, causality and the CLI all work with it on."""

from __future__ import annotations

import copy

import pytest
import torch
from test_pixelcnnpp import BASE, SMALL, SMALL_FLAGS
from test_sampling import both_samplers_agree

from pixelcnn_cli import SupportsDataInit, registry
from pixelcnn_cli.building import build_data
from pixelcnn_cli.causality import check_causality, full_view_size
from pixelcnn_cli.checkpoint import load_checkpoint
from pixelcnn_cli.contracts import ModelSpec
from pixelcnn_cli.data.quantize import levels_to_input, to_levels
from pixelcnn_cli.models.blocks import GatedResnet, weight_norm_scales
from pixelcnn_cli.models.pixelcnnpp import PixelCNNPPOptions
from pixelcnn_cli.models.pixelcnnpp.net import PixelCNNPPNet
from pixelcnn_cli.models.pixelcnnpp.plugin import PixelCNNPP
from pixelcnn_cli.models.weight_norm import fixed_random_numbers, is_weight_normed
from pixelcnn_cli.training.ema import WeightAverage

WN_FLAGS = [*SMALL_FLAGS, "--model-option", "weight_norm=true"]


def build(channels: int = 3, classes: int = 0, levels: int = 16, seed: int = 0, **options):
    spec = ModelSpec(channels, 8, 8, levels, classes)
    torch.manual_seed(seed)
    return registry.models.get("pixelcnnpp").build(PixelCNNPPOptions(**{**SMALL, **options}), spec), spec


def init_batch(spec: ModelSpec, count: int = 16, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(count, spec.channels, spec.height, spec.width, generator=generator) * 2 - 1
    labels = torch.randint(spec.num_classes, (count,), generator=generator) if spec.num_classes else None
    return x, labels


def layer_outputs(model: PixelCNNPP, x, labels) -> dict[torch.nn.Module, torch.Tensor]:
    """Every convolution's output in one train-mode pass, dropout drawn as the init pass draws it."""
    outputs = {}
    hooks = [m.register_forward_hook(lambda m, a, out: outputs.__setitem__(m, out))
             for m in weight_norm_scales(model.net)]
    model.train()
    with torch.no_grad(), fixed_random_numbers(x.device):
        model(x, labels)
    for hook in hooks:
        hook.remove()
    return outputs


@pytest.mark.parametrize("channels,classes,dropout", [(1, 0, 0.0), (3, 10, 0.0), (3, 0, 0.5)])
def test_after_data_init_every_layer_has_mean_zero_and_its_init_scale(channels, classes, dropout):
    model, spec = build(channels, classes, dropout=dropout, nr_resnet=2, weight_norm=True)
    x, labels = init_batch(spec)
    model.data_init(x, labels)
    scales = weight_norm_scales(model.net)
    # openai/pixel-cnn: 0.1 for every block's second convolution, 1 elsewhere (the output 1x1 too)
    blocks = [m for m in model.net.modules() if isinstance(m, GatedResnet)]
    assert sorted(scales.values()).count(0.1) == len(blocks) and scales[model.net.out] == 1.0
    outputs = layer_outputs(model, x, labels)
    assert set(outputs) == set(scales)  # every layer ran
    for module, out in outputs.items():
        mean, std = out.mean(dim=(0, 2, 3)), out.std(dim=(0, 2, 3), unbiased=False)
        assert mean.abs().max() < 1e-4 * scales[module], type(module).__name__
        assert torch.allclose(std, torch.full_like(std, scales[module]), rtol=1e-3), type(module).__name__


def test_data_init_is_a_function_of_the_weights_and_the_batch_and_leaves_the_random_stream():
    model, spec = build(dropout=0.5, weight_norm=True)
    twin = copy.deepcopy(model)
    x, labels = init_batch(spec)
    model.eval()
    state = torch.get_rng_state()
    model.data_init(x, labels)
    assert torch.equal(torch.get_rng_state(), state)
    assert not model.training  # the mode is put back
    twin.data_init(x, labels)
    a, b = model.state_dict(), twin.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert isinstance(model, SupportsDataInit)


def test_the_option_off_is_todays_network_and_data_init_leaves_it_alone():
    model, spec = build()
    assert not model.options.weight_norm
    assert not any(is_weight_normed(m) for m in model.modules())
    torch.manual_seed(0)
    today = PixelCNNPPNet(spec.channels, model.net.out_channels, 0, SMALL["nr_resnet"], SMALL["nr_filters"], 0.0)
    ours, theirs = model.net.state_dict(), today.state_dict()
    assert list(ours) == list(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    before = copy.deepcopy(model.state_dict())
    model.data_init(*init_batch(spec))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_weight_normed_state_saves_loads_and_copies(tmp_path):
    model, spec = build(3, 5, weight_norm=True)
    model.data_init(*init_batch(spec))
    keys = list(model.state_dict())
    assert any(k.endswith("parametrizations.weight.original0") for k in keys)  # g
    assert not any(k.endswith("conv_in.weight") for k in keys)  # the weight is computed, not stored
    torch.save(model.state_dict(), tmp_path / "w.pt")
    loaded, _ = build(3, 5, seed=1, weight_norm=True)
    loaded.load_state_dict(torch.load(tmp_path / "w.pt"))
    x, labels = init_batch(spec, 4, seed=2)
    model.eval(), loaded.eval()
    with torch.no_grad():
        expected = model(x, labels)
        assert torch.equal(loaded(x, labels), expected)
        assert torch.equal(WeightAverage(model, 0.999).model(x, labels), expected)  # deepcopy, as the EMA makes it
        compiled = torch.compile(model, backend="eager")  # dynamo traces the parametrisation
        assert torch.allclose(compiled(x, labels), expected, atol=1e-6)


@pytest.mark.parametrize("channels,levels,classes,size", [(1, 4, 0, (6, 5)), (3, 16, 5, (5, 6))])
def test_cached_sampler_equals_naive_with_weight_norm(channels, levels, classes, size):
    """The cached sampler reads ``module.weight``, which weight norm computes from g and v."""
    model, spec = build(channels, classes, levels, weight_norm=True, dropout=0.5)
    model.data_init(*init_batch(spec))
    with torch.no_grad():
        for block in model.net.modules():
            if isinstance(block, GatedResnet) and block.label_bias is not None:
                block.label_bias.weight.normal_(0, 0.1)  # the classes matter
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        both_samplers_agree(model, spec, 2, size, seed=3)
    finally:
        torch.set_num_threads(threads)


def test_causality_holds_with_weight_norm():
    model, spec = build(3, 10, 4, weight_norm=True)
    model.data_init(*init_batch(spec))
    side = full_view_size(model, spec)
    report = check_causality(model.eval(), spec, side, side, max_trials=3)
    assert report.future_violations == 0, report.first_violation()
    assert report.blind_spots == 0, report.first_blind_spot()


def test_inspect_masks_with_weight_norm(cli):
    result = cli("inspect-masks", "--model", "pixelcnnpp", "--channels", "1", *WN_FLAGS)
    assert result.exit_code == 0, result.stderr
    assert "causal" in result.stdout


def test_train_inits_fresh_runs_once_and_resumes_exactly(cli, tmp_path, monkeypatch):
    """A fresh run initialises from the first 16 training images; a resumed one loads its weights
    instead, so 2 epochs straight == 1 epoch + resume, bit for bit."""
    calls = []
    original = PixelCNNPP.data_init

    def spy(self, x, labels=None):
        calls.append((x.clone(), labels))
        original(self, x, labels)

    monkeypatch.setattr(PixelCNNPP, "data_init", spy)
    common = [*BASE, "--model", "pixelcnnpp", *WN_FLAGS, "--lr-schedule", "constant", "--color-levels", "16",
              "--ema", "0.99"]
    for name, epochs in (("straight", "2"), ("split", "1")):
        result = cli("train", *common, "--epochs", epochs, "--run-name", name)
        assert result.exit_code == 0, result.stderr
    assert len(calls) == 2 and calls[0][0].shape == (16, 1, 28, 28) and calls[0][1].shape == (16,)  # conditional
    assert torch.equal(calls[0][0], calls[1][0]) and torch.equal(calls[0][1], calls[1][1])  # by index: the same
    data = build_data("mnist-sample", ".data", False, {})
    first = torch.stack([data.train[i][0] for i in range(16)])
    assert torch.equal(calls[0][0], levels_to_input(to_levels(first, 16), 16))  # fp32, the model's input scale
    assert cli("train", "--resume", "runs/split", "--epochs", "2").exit_code == 0
    assert len(calls) == 2  # not on resume
    straight = load_checkpoint(tmp_path / "runs" / "straight" / "checkpoints" / "last.pt")
    split = load_checkpoint(tmp_path / "runs" / "split" / "checkpoints" / "last.pt")
    assert straight["model_options"]["weight_norm"] is True
    for entry in ("model_state",):
        a, b = straight[entry], split[entry]
        assert any("original0" in k for k in a) and all(torch.equal(a[k], b[k]) for k in a)
    raw_a, raw_b = straight["train_state"]["raw_model_state"], split["train_state"]["raw_model_state"]
    assert all(torch.equal(raw_a[k], raw_b[k]) for k in raw_a)

    best = tmp_path / "runs" / "split" / "checkpoints" / "best.pt"
    for sampler in ("cached", "naive"):
        sampled = cli("sample", "-m", str(best), "-c", "1", "--height", "4", "--width", "4", "--seed", "0",
                      "--sampler", sampler, "--output-fname", f"{sampler}.png", "--device", "cpu")
        assert sampled.exit_code == 0, sampled.stderr
    assert (tmp_path / "cached.png").read_bytes() == (tmp_path / "naive.png").read_bytes()
