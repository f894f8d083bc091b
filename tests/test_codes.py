"""Codes as data: the ``codes`` dataset (.npy / .npz, memory-mapped, checked), the gated model over
codes (an embedding, a K-way softmax, strictly causal, both samplers exact) and the commands."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from conftest import TINY, one_error_line

from pixelcnn_cli import sampling
from pixelcnn_cli.causality import check_causality, condition_reach, full_view_size
from pixelcnn_cli.config import ArchitectureConfig
from pixelcnn_cli.contracts import ImageData, ModelSpec, pack_context
from pixelcnn_cli.data.codes import Codes, CodesOptions
from pixelcnn_cli.datachoice import check_fits
from pixelcnn_cli.errors import DataError
from pixelcnn_cli.images import code_palette
from pixelcnn_cli.inspection import condition_summary
from pixelcnn_cli.models.codes import input_codes
from pixelcnn_cli.models.gated import GatedPixelCNN
from pixelcnn_cli.models.pixelsnail import PixelSNAILOptions, PixelSNAILPlugin

K = 12


def maps(count=60, side=6, codes=K, seed=0, dtype=np.int16):
    """Maps with structure a prior can learn: each row repeats one code, the next row's code follows."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, codes, size=count)
    rows = (first[:, None] + np.arange(side)[None]) % codes
    return np.repeat(rows[:, :, None], side, axis=2).astype(dtype)


def load(**options):
    return Codes().load(None, False, CodesOptions(**options))


def test_an_npz_is_mapped_split_by_seed_and_knows_its_codes(tmp_path):
    data = maps(50)
    labels = np.arange(50) % 3
    np.savez(tmp_path / "m.npz", codes=data, labels=labels, num_codes=np.array(16))
    loaded = load(path=str(tmp_path / "m.npz"), test_fraction=0.2, split_seed=1)
    assert (loaded.codes, loaded.channels, loaded.height, loaded.width) == (16, 1, 6, 6)  # the file's num_codes
    assert (len(loaded.train), len(loaded.test)) == (40, 10) and loaded.classes == ["0", "1", "2"]
    assert isinstance(loaded.train.maps, np.memmap)  # not read into memory
    rows = sorted(np.concatenate([loaded.train.indices, loaded.test.indices]).tolist())
    assert rows == list(range(50))  # the two splits cover every map once
    assert np.array_equal(load(path=str(tmp_path / "m.npz"), test_fraction=0.2, split_seed=1).test.indices,
                          loaded.test.indices)
    item, label = loaded.test[3]
    row = loaded.test.indices[3]
    assert item.dtype == torch.long and item.shape == (1, 6, 6) and torch.equal(item[0], torch.from_numpy(data[row]).long())
    assert label == labels[row]
    batch = loaded.test.__getitems__([0, 3])
    assert torch.equal(batch.images[1], item) and batch.labels.tolist() == [labels[loaded.test.indices[0]], label]


def test_npy_files_with_a_test_file_take_k_from_the_largest_code(tmp_path):
    np.save(tmp_path / "train.npy", maps(30, codes=9))
    np.save(tmp_path / "test.npy", maps(10, codes=9, seed=1))
    loaded = load(path=str(tmp_path / "train.npy"), test_path=str(tmp_path / "test.npy"))
    assert loaded.codes == 9 and (len(loaded.train), len(loaded.test)) == (30, 10) and loaded.classes is None
    assert isinstance(loaded.train.maps, np.memmap)
    compressed = tmp_path / "c.npz"
    np.savez_compressed(compressed, codes=maps(5))
    assert load(path=str(compressed)).codes == K  # read into memory: a compressed member cannot be mapped


@pytest.mark.parametrize("arrays,options,message", [
    ({"codes": maps(5).astype(np.float32)}, {}, "m.npz['codes'] is float32; code maps must be integers"),
    ({"codes": maps(5)[:, 0]}, {}, "m.npz['codes'] is shaped (5, 6); code maps must be N x H x W"),
    ({"labels": np.zeros(5)}, {}, "m.npz has no 'codes' array"),
    ({"codes": maps(5), "labels": np.zeros(4, dtype=np.int64)}, {}, "m.npz['labels'] has 4 labels for 5 maps"),
    ({"codes": maps(5) - 3}, {}, "holds a negative code (-3)"),
    ({"codes": maps(5)}, {"num_codes": 8}, "holds code 11, outside 0..7 (num_codes 8)"),
    ({"codes": np.zeros((5, 2, 2), dtype=np.int64)}, {}, "1 codes; pixelcnn models 2 to 65536"),
])
def test_bad_arrays_are_one_line_errors_that_name_them(tmp_path, arrays, options, message):
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(DataError, match=None) as caught:
        load(path=str(tmp_path / "m.npz"), **options)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_train_and_test_files_must_agree(tmp_path):
    np.save(tmp_path / "a.npy", maps(5, side=6))
    np.save(tmp_path / "b.npy", maps(5, side=4))
    with pytest.raises(DataError, match=r"b.npy holds 4x4 maps, .*a.npy 6x6"):
        load(path=str(tmp_path / "a.npy"), test_path=str(tmp_path / "b.npy"))
    with pytest.raises(DataError, match="no such file"):
        load(path=str(tmp_path / "missing.npy"))


def gated_over_codes(codes=K, classes=0, layers=2, seed=0, side=6):
    torch.manual_seed(seed)
    spec = ModelSpec(1, side, side, codes, classes, codes=True)
    arch = ArchitectureConfig(causal_ksize=3, hidden_ksize=3, hidden_fmaps=8, out_hidden_fmaps=8, hidden_layers=layers)
    return GatedPixelCNN(spec, arch), spec


def pixelsnail_over_codes(codes=K, classes=0, layers=2, seed=0, side=6):
    torch.manual_seed(seed)
    spec = ModelSpec(1, side, side, codes, classes, codes=True)
    options = PixelSNAILOptions(nr_resnet=1, nr_filters=8, attention_blocks=layers, key_size=4, value_size=4, dropout=0)
    return PixelSNAILPlugin().build(options, spec).eval(), spec


PRIORS = {"gated": gated_over_codes, "pixelsnail": pixelsnail_over_codes}


def test_codes_survive_the_input_scale_up_to_65536():
    for k in (2, 512, 4096, 65536):
        codes = torch.arange(k)  # every code
        assert torch.equal(input_codes(sampling.levels_to_input(codes[None, None], k), k)[0], codes)
    palette = code_palette(4096)
    assert palette.shape == (4096, 3) and len({tuple(c) for c in palette.tolist()}) > 4000  # codes look apart


@pytest.mark.parametrize("classes", [0, 5])
@pytest.mark.parametrize("prior", PRIORS)
def test_a_prior_over_codes_is_strictly_causal_and_sees_every_earlier_code(prior, classes):
    model, spec = PRIORS[prior](classes=classes, layers=3, side=8)
    # the largest square the gated prior sees whole: 5x5 (reach 4); pixelsnail sees any size whole
    side = min(8, full_view_size(model, spec))
    report = check_causality(model, spec, side, side)
    assert report.future_violations == 0, report.first_violation()
    assert report.blind_spots == 0, report.first_blind_spot()
    assert not report.depends[0].any() and report.depends[-1, :-1].all()
    logits = model(sampling.levels_to_input(torch.randint(0, K, (2, 1, 8, 8)), K), torch.tensor([0, 1]) if classes else None)
    assert logits.shape == (2, K, 1, 8, 8)  # one K-way softmax per position


@pytest.mark.parametrize("classes", [0, 5])
@pytest.mark.parametrize("prior", PRIORS)
def test_both_samplers_draw_the_same_code_maps(prior, classes):
    model, spec = PRIORS[prior](classes=classes)
    labels = torch.arange(4) % classes if classes else None
    uniforms = sampling.draw_uniforms(4, 1, 6, 6, 3)
    steps = {}
    for name in ("naive", "cached"):
        seen = []
        levels = sampling.sample(model, spec, labels, uniforms, sampler=name,
                                 on_logits=lambda r, c, ch, lg: seen.append(lg.clone()))
        steps[name] = (levels, seen)
    assert torch.equal(steps["naive"][0], steps["cached"][0])
    for a, b in zip(steps["naive"][1], steps["cached"][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert steps["cached"][0].max() < K and steps["cached"][0].shape == (4, 1, 6, 6)


@pytest.mark.parametrize("prior", PRIORS)
def test_a_4096_code_prior_builds_and_trains_a_step(prior):
    model, spec = PRIORS[prior](codes=4096, layers=1)
    model.train()
    x = sampling.levels_to_input(torch.randint(0, 4096, (2, 1, 6, 6)), 4096)
    loss = torch.nn.functional.cross_entropy(model(x), input_codes(x, 4096)[:, None])
    loss.backward()
    assert torch.isfinite(loss) and model.embed.table.weight.grad.abs().sum() > 0


def test_train_eval_score_and_sample_a_prior_through_the_cli(cli, tmp_path):
    np.savez(tmp_path / "top.npz", codes=maps(80), labels=np.arange(80) % 4)
    data = ["--dataset", "codes", "--dataset-option", f"path={tmp_path / 'top.npz'}"]
    run = ["train", *data, "--epochs", "3", "--lr", "0.01", "--batch-size", "8", "--epoch-samples", "4", "--seed", "0",
           "--device", "cpu", "--run-name", "prior", *TINY]
    trained = cli(*run)
    assert trained.exit_code == 0, trained.stderr
    said = trained.stdout + trained.stderr
    assert "6x6 maps of 12 codes" in said and "bits/dim" not in said and " bits/code (best)" in said
    folder = tmp_path / "runs" / "prior"
    recorded = json.loads((folder / "config.json").read_text())
    assert recorded["config"]["color_levels"] == recorded["spec"]["color_levels"] == K and recorded["spec"]["codes"] is True
    listed = cli("runs", "--json")
    assert json.loads(listed.stdout)[0]["codes"] is True and "/code " in cli("runs").stdout
    assert cli("plot", "prior", "-o", "curves.png").exit_code == 0 and (tmp_path / "curves.png").exists()
    evaluated = cli("eval", "-m", folder, "--json")
    record = json.loads(evaluated.stdout)
    assert record["codes"] is True and record["bits_per_code"] == record["bits_per_dim"] < np.log2(K)
    assert record["images"] == 8 and record["nats_per_map"] == pytest.approx(record["bits_per_code"] * 36 * np.log(2))
    scored = cli("score", "-m", folder, "-o", "rows.csv")
    assert scored.exit_code == 0 and "8 maps" in scored.stdout and "bits/code mean" in scored.stdout
    lines = (tmp_path / "rows.csv").read_text().splitlines()
    assert lines[0] == "map,label,nats,bits_per_code" and len(lines) == 9
    sampled = cli("sample", "-m", folder, "-c", "6", "--label", "2", "--seed", "1", "-o", "out/maps.png")
    assert sampled.exit_code == 0, sampled.stderr
    drawn = np.load(tmp_path / "out" / "maps.npy")
    assert drawn.shape == (6, 6, 6) and drawn.dtype == np.int16 and 0 <= drawn.min() and drawn.max() < K
    assert (tmp_path / "out" / "maps.png").exists() and "out/maps.npy (preview: out/maps.png)" in sampled.stdout
    np.save(tmp_path / "tops.npy", np.zeros((1, 3, 3), np.int16))
    assert "reads no condition maps" in one_error_line(cli("sample", "-m", folder, "--condition", tmp_path / "tops.npy"))
    again = cli("sample", "-m", folder, "-c", "6", "--label", "2", "--seed", "1", "--sampler", "naive", "-o", "n.png")
    assert again.exit_code == 0 and np.array_equal(np.load(tmp_path / "n.npy"), drawn)  # naive == cached
    completed = cli("sample", "-m", folder, "--complete", "-c", "2", "--sources", "2", "--seed", "0", "-o", "c.png")
    assert completed.exit_code == 0 and np.load(tmp_path / "c.npy").shape == (4, 6, 6), completed.stderr


def test_codes_meet_clear_errors(cli, tmp_path):
    np.save(tmp_path / "m.npy", maps(20))
    data = ["--dataset", "codes", "--dataset-option", f"path={tmp_path / 'm.npy'}", "--epochs", "1", "--device", "cpu"]
    refused = one_error_line(cli("train", *data, "--model", "pixelcnnpp"))
    assert "'pixelcnnpp' does not model codes" in refused and "models that do: gated, pixelsnail" in refused
    line = one_error_line(cli("train", *data, "--color-levels", "16", *TINY))
    assert "--color-levels 16: dataset 'codes' holds 12 codes" in line
    assert "at most 256 levels" in one_error_line(cli("train", "--dataset", "mnist-sample", "--color-levels", "300"))
    assert "m.npy['codes']" not in one_error_line(cli("train", "--dataset", "codes", "--dataset-option",
                                                      f"path={tmp_path / 'nope.npy'}"))


def test_pixelsnail_trains_evaluates_and_samples_codes_through_the_cli(cli, tmp_path):
    np.save(tmp_path / "m.npy", maps(40))
    small = ["--model-option", "nr_resnet=1", "--model-option", "nr_filters=8", "--model-option", "attention_blocks=1",
             "--model-option", "key_size=4", "--model-option", "value_size=4"]
    trained = cli("train", "--dataset", "codes", "--dataset-option", f"path={tmp_path / 'm.npy'}", "--model", "pixelsnail",
                  *small, "--epochs", "1", "--batch-size", "8", "--epoch-samples", "2", "--seed", "0", "--device", "cpu",
                  "--run-name", "snail")
    assert trained.exit_code == 0, trained.stderr
    folder = tmp_path / "runs" / "snail"
    record = json.loads(cli("eval", "-m", folder, "--json").stdout)
    assert record["codes"] is True and 0 < record["bits_per_code"] < 2 * np.log2(K)
    for sampler in ("cached", "naive"):
        sampled = cli("sample", "-m", folder, "-c", "3", "--seed", "4", "--sampler", sampler, "-o", f"{sampler}.png")
        assert sampled.exit_code == 0, sampled.stderr
    assert np.array_equal(np.load(tmp_path / "cached.npy"), np.load(tmp_path / "naive.npy"))


@pytest.mark.parametrize("prior, options", [
    ("gated", ["--hidden-layers", "2", "--hidden-fmaps", "8", "--out-hidden-fmaps", "8"]),
    ("pixelsnail", ["--model-option", "nr_filters=8", "--model-option", "attention_blocks=1", "--model-option", "nr_resnet=1",
                    "--model-option", "key_size=4", "--model-option", "value_size=4", "--size", "16"]),
])
def test_inspect_masks_proves_a_fresh_prior_over_codes_causal(cli, prior, options):
    result = cli("inspect-masks", "--model", prior, "--codes", "512", *options)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "causal: every output depends on exactly the earlier codes" in result.stdout
    assert re.search(r"on a \d+x\d+ map\)", result.stdout)  # one channel of codes, not an image's colours
    assert "condition" not in result.stdout
    conditioned = cli("inspect-masks", "--model", prior, "--codes", "512", "--condition-codes", "5", *options)
    assert conditioned.exit_code == 0, conditioned.stdout + conditioned.stderr
    assert "earlier codes" in conditioned.stdout and "condition read everywhere" in conditioned.stdout
    assert "the 7x7 condition map of 5 codes" in conditioned.stdout


@pytest.mark.parametrize("prior", PRIORS)
def test_the_condition_check_finds_what_each_output_reads_and_catches_a_lost_condition(prior):
    model, spec = conditioned(prior)
    for module in model.modules():  # the check sees the paths a zero-initialised projection hides
        if type(module).__name__ == "ConditionBias":
            torch.nn.init.zeros_(module.proj.weight)
    reads = condition_reach(model, spec, 6, 6)
    assert reads.shape == (36, 9) and reads.any(dim=1).all()
    assert reads[0].all()  # the first code reads even the cell over the last positions: the condition is unmasked
    summary = condition_summary(spec, reads)
    assert summary.unread == 0 and summary.first_cells == int(reads[0].sum())

    def drop_first_row(module, inputs, features):  # a broken model: no condition on the first row
        features = features.clone()
        features[:, :, 0] = 0
        return features

    model.condition_net.register_forward_hook(drop_first_row)
    lost = condition_summary(spec, condition_reach(model, spec, 6, 6))
    assert lost.unread == 6  # the first row's outputs: nothing before them reads the condition either


def test_inspect_masks_refuses_codes_it_cannot_build(cli):
    assert "'pixelcnnpp' does not model codes" in one_error_line(cli("inspect-masks", "--model", "pixelcnnpp", "--codes", "12"))
    assert "leave --channels and --color-levels out" in one_error_line(cli("inspect-masks", "--codes", "12", "--channels", "1"))


def conditioned(prior, classes=0, seed=0):
    """A prior over 6x6 maps conditioned on 3x3 maps of 5 codes, its condition terms made non-zero."""
    torch.manual_seed(seed)
    spec = ModelSpec(1, 6, 6, K, classes, codes=True, condition_codes=5, condition_height=3, condition_width=3)
    if prior == "gated":
        model = GatedPixelCNN(spec, ArchitectureConfig(causal_ksize=3, hidden_ksize=3, hidden_fmaps=8, out_hidden_fmaps=8,
                                                       hidden_layers=2))
    else:
        model = PixelSNAILPlugin().build(PixelSNAILOptions(nr_resnet=1, nr_filters=8, attention_blocks=2, key_size=4,
                                                           value_size=4, dropout=0), spec)
    for module in model.modules():  # the 1x1s start at zero (the condition adds nothing until trained)
        if type(module).__name__ == "ConditionBias":
            torch.nn.init.normal_(module.proj.weight, std=0.5)
    return model.eval(), spec


@pytest.mark.parametrize("prior", PRIORS)
def test_a_conditioned_prior_keeps_codes_causal_and_reads_the_condition_everywhere(prior):
    model, spec = conditioned(prior, classes=3)
    report = check_causality(model, spec, 6, 6)
    assert report.future_violations == 0, report.first_violation()
    assert report.blind_spots == 0 or prior == "gated", report.first_blind_spot()
    x = sampling.levels_to_input(torch.randint(0, K, (1, 1, 6, 6)), K)
    condition = torch.randint(0, 5, (1, 3, 3))
    base = model(x, pack_context(torch.tensor([1]), condition))
    for cell in ((0, 0), (2, 2)):  # changing one coarse cell moves outputs before and after its area
        changed = condition.clone()
        changed[0, cell[0], cell[1]] = (changed[0, cell[0], cell[1]] + 1) % 5
        moved = (model(x, pack_context(torch.tensor([1]), changed)) - base).abs().amax(dim=(0, 1, 2)) > 0
        assert moved[0, 0] and moved[-1, -1], moved  # the first and the last position both read it


@pytest.mark.parametrize("classes", [0, 3])
@pytest.mark.parametrize("prior", PRIORS)
def test_both_samplers_draw_the_same_maps_given_a_condition(prior, classes):
    model, spec = conditioned(prior, classes)
    condition = torch.randint(0, 5, (4, 3, 3), generator=torch.Generator().manual_seed(1))
    labels = pack_context(torch.arange(4) % classes if classes else None, condition)
    uniforms = sampling.draw_uniforms(4, 1, 6, 6, 3)
    naive = sampling.sample(model, spec, labels, uniforms, sampler="naive")
    assert torch.equal(naive, sampling.sample(model, spec, labels, uniforms, sampler="cached"))
    other = pack_context(torch.arange(4) % classes if classes else None, (condition + 1) % 5)
    assert not torch.equal(naive, sampling.sample(model, spec, other, uniforms, sampler="cached"))  # it is read


def test_condition_maps_load_train_evaluate_and_score(cli, tmp_path):
    codes = maps(60)
    condition = codes[:, ::2, ::2] % 5  # a coarser 3x3 map of 5 codes
    np.savez(tmp_path / "bottom.npz", codes=codes, condition=condition, labels=np.arange(60) % 3)
    data = load(path=str(tmp_path / "bottom.npz"))
    assert (data.condition_codes, data.condition_height, data.condition_width) == (5, 3, 3)
    item, context = data.test[0]
    assert context.shape == (10,) and torch.equal(context[1:].view(3, 3), torch.from_numpy(condition[data.test.indices[0]]).long())
    for model in ("gated", "pixelsnail"):
        options = TINY if model == "gated" else ["--model-option", "nr_filters=8", "--model-option", "attention_blocks=1",
                                                 "--model-option", "nr_resnet=1", "--model-option", "key_size=4"]
        trained = cli("train", "--dataset", "codes", "--dataset-option", f"path={tmp_path / 'bottom.npz'}", "--model", model,
                      *options, "--epochs", "1", "--batch-size", "8", "--epoch-samples", "3", "--device", "cpu",
                      "--run-name", model)
        assert trained.exit_code == 0, trained.stderr
        assert "6x6 maps of 12 codes, given 3x3 maps of 5 codes" in trained.stdout + trained.stderr
        folder = tmp_path / "runs" / model
        assert json.loads((folder / "config.json").read_text())["spec"]["condition_codes"] == 5
        assert (folder / "samples" / "epoch_001.png").exists()  # drawn given the first test maps' conditions
        record = json.loads(cli("eval", "-m", folder, "--json").stdout)
        assert 0 < record["bits_per_code"] < 2 * np.log2(K)
        assert cli("score", "-m", folder, "-o", f"{model}.csv").exit_code == 0
        assert len((tmp_path / f"{model}.csv").read_text().splitlines()) == 1 + len(data.test)
    np.save(tmp_path / "tops.npy", condition[:4])
    for model in ("gated", "pixelsnail"):
        drawn = {}
        for sampler in ("cached", "naive"):
            done = cli("sample", "-m", tmp_path / "runs" / model, "--condition", tmp_path / "tops.npy", "-c", "4", "--seed", "2",
                       "--sampler", sampler, "-o", f"{model}-{sampler}.png")
            assert done.exit_code == 0, done.stderr
            drawn[sampler] = np.load(tmp_path / f"{model}-{sampler}.npy")
        assert drawn["cached"].shape == (4, 6, 6) and np.array_equal(drawn["cached"], drawn["naive"])
    gated = tmp_path / "runs" / "gated"
    assert "give them with --condition FILE.npy" in one_error_line(cli("sample", "-m", gated))
    assert "holds 4 condition maps for 6 samples" in one_error_line(cli("sample", "-m", gated, "--condition", tmp_path / "tops.npy", "-c", "6"))
    np.save(tmp_path / "wide.npy", np.zeros((1, 4, 4), np.int16))
    assert "the prior reads N x 3 x 3" in one_error_line(cli("sample", "-m", gated, "--condition", tmp_path / "wide.npy"))
    assert "--condition: no such file" in one_error_line(cli("sample", "-m", gated, "--condition", tmp_path / "none.npy"))
    np.save(tmp_path / "one.npy", np.zeros((3, 3), np.int64))  # one map, no N: one for all
    one = cli("sample", "-m", gated, "--condition", tmp_path / "one.npy", "-c", "2", "-o", "two.png")
    assert one.exit_code == 0 and np.load(tmp_path / "two.npy").shape == (2, 6, 6), one.stderr
    assert "which is the --condition file" in one_error_line(cli("sample", "-m", gated, "--condition", tmp_path / "one.npy",
                                                                 "-o", tmp_path / "one.png"))
    assert np.load(tmp_path / "one.npy").shape == (3, 3)  # the condition file is left as it was
    np.save(tmp_path / "high.npy", np.full((1, 3, 3), 9))
    assert "outside 0..4" in one_error_line(cli("sample", "-m", gated, "--condition", tmp_path / "high.npy"))
    assert "not with --complete" in one_error_line(cli("sample", "-m", gated, "--complete", "--condition", tmp_path / "tops.npy"))
    assert "--height: not for a prior conditioned" in one_error_line(cli("sample", "-m", gated, "--condition", tmp_path / "tops.npy", "--height", "8"))
    inspected = cli("inspect-masks", "-m", gated)
    assert inspected.exit_code == 0 and "the 3x3 condition map of 5 codes" in inspected.stdout, inspected.stdout
    for model in ("gated", "pixelsnail"):
        completes_under_own_condition(cli, tmp_path, tmp_path / "runs" / model, data)
    scores_under_any_class(cli, tmp_path, gated)
    np.savez(tmp_path / "classless.npz", codes=codes, condition=condition)  # a conditioned prior without classes
    trained = cli("train", "--dataset", "codes", "--dataset-option", f"path={tmp_path / 'classless.npz'}", *TINY, "--epochs", "1",
                  "--batch-size", "8", "--epoch-samples", "0", "--device", "cpu", "--run-name", "classless")
    assert trained.exit_code == 0, trained.stderr
    record = json.loads(cli("eval", "-m", tmp_path / "runs" / "classless", "--json").stdout)
    assert record["likelihood"] == "-log p(x|c)" and "given its condition map" in record["description"]
    assert cli("score", "-m", tmp_path / "runs" / "classless", "-o", "classless.csv").exit_code == 0
    rows = (tmp_path / "classless.csv").read_text().splitlines()[1:]
    mean = np.mean([float(row.split(",")[3]) for row in rows])
    assert abs(mean - record["bits_per_code"]) < 1e-4  # scored under each map's condition, as eval scores it
    assert "the prior has no classes" in one_error_line(cli("score", "-m", tmp_path / "runs" / "classless", "--label", "0"))
    np.savez(tmp_path / "flat.npz", codes=codes)  # the same maps without their condition
    flat = ["--dataset", "codes", "--dataset-option", f"path={tmp_path / 'flat.npz'}"]
    for command in (["eval", "-m", gated], ["score", "-m", gated], ["sample", "-m", gated, "--complete"]):
        assert "codes has no condition maps, and the prior reads 3x3 maps of 5 codes" in one_error_line(cli(*command, *flat))
    Image.new("L", (6, 6)).save(tmp_path / "picture.png")
    for flags in ([tmp_path / "picture.png"], ["--compare", tmp_path / "picture.png"]):
        assert "the model is a prior over 12 codes, not pictures" in one_error_line(cli("score", "-m", gated, *flags))
    assert "mnist-sample holds pictures, and the model is a prior over 12 codes" in one_error_line(
        cli("eval", "-m", gated, "--dataset", "mnist-sample"))


@pytest.mark.parametrize("data, spec, message", [
    (dict(codes=12), dict(), "holds code maps, and the model is a model of pictures"),
    (dict(codes=20), dict(codes=True), "has 20 codes but the prior knows 12"),
    (dict(codes=12, condition_codes=5, condition_height=3, condition_width=3), dict(codes=True),
     "has condition maps, which this prior does not read"),
    (dict(codes=12, condition_codes=5, condition_height=2, condition_width=2), dict(codes=True, condition_codes=5),
     "condition maps are 2x2; the prior reads 3x3 maps of 5 codes"),
    (dict(codes=12, condition_codes=9, condition_height=3, condition_width=3), dict(codes=True, condition_codes=5),
     "condition maps have 9 codes; the prior reads 3x3 maps of 5 codes"),
    (dict(codes=12, condition_codes=5, condition_height=3, condition_width=3, height=8), dict(codes=True, condition_codes=5),
     "maps are 8x6; the prior, conditioned on maps laid over its training size, takes 6x6"),
])
def test_data_a_trained_prior_cannot_read_is_a_clear_error(data, spec, message):
    data = ImageData(1, data.pop("height", 6), 6, None, [], [], **data)
    side = 3 if spec.get("condition_codes") else 0
    spec = ModelSpec(1, 6, 6, K, 0, **spec, condition_height=side, condition_width=side)
    with pytest.raises(DataError, match=message):
        check_fits("maps", data, spec)


def completes_under_own_condition(cli, tmp_path, folder, data):
    """--complete on a conditioned prior: test maps kept on top, both samplers the same maps."""
    drawn = {}
    for sampler in ("cached", "naive"):
        done = cli("sample", "-m", folder, "--complete", "--indices", "0,1", "-c", "2", "--keep-rows", "2", "--seed", "1",
                   "--sampler", sampler, "-o", f"done-{sampler}.png")
        assert done.exit_code == 0, done.stderr
        drawn[sampler] = np.load(tmp_path / f"done-{sampler}.npy")
    assert drawn["cached"].shape == (4, 6, 6) and np.array_equal(drawn["cached"], drawn["naive"])
    for i, row in enumerate(data.test.indices[:2]):  # each source twice, its top two rows kept
        assert np.array_equal(drawn["cached"][2 * i:2 * i + 2, :2], np.repeat(data.test.maps[row][None, :2], 2, axis=0))


def scores_under_any_class(cli, tmp_path, folder):
    """score on a conditioned prior with classes: its own, a given one, and the marginal (each map's
    condition kept throughout): the marginal is the log-mean-exp over the classes."""
    def nats(*flags):
        done = cli("score", "-m", folder, *flags, "-o", "s.csv")
        assert done.exit_code == 0, done.stderr
        rows = [line.split(",") for line in (tmp_path / "s.csv").read_text().splitlines()[1:]]
        return np.array([float(row[2]) for row in rows]), [row[1] for row in rows]

    own, own_labels = nats()
    assert own_labels == [str(i % 3) for i in load(path=str(tmp_path / "bottom.npz")).test.indices]
    given = []
    for y in range(3):
        values, labels = nats("--label", str(y))
        assert set(labels) == {str(y)}
        given.append(values)
    marginal, labels = nats("--marginal")
    assert set(labels) == {""}
    expected = -(np.logaddexp.reduce(-np.stack(given), axis=0) - np.log(3))
    assert np.allclose(marginal, expected, atol=2e-3)  # the CSV rounds to 4 decimals
    assert np.allclose(own, np.choose(np.array(own_labels, int), given), atol=2e-3)


def test_condition_maps_meet_clear_errors(tmp_path):
    np.savez(tmp_path / "big.npz", codes=maps(10), condition=np.zeros((10, 8, 8), np.int16))
    with pytest.raises(DataError, match="larger than the 6x6 maps"):
        load(path=str(tmp_path / "big.npz"))
    np.savez(tmp_path / "few.npz", codes=maps(10), condition=np.zeros((9, 3, 3), np.int16))
    with pytest.raises(DataError, match="9 condition maps for 10 maps"):
        load(path=str(tmp_path / "few.npz"))
    np.savez(tmp_path / "float.npz", codes=maps(10), condition=np.zeros((10, 3, 3)))
    with pytest.raises(DataError, match="condition maps must be N x h x w integers"):
        load(path=str(tmp_path / "float.npz"))
    np.savez(tmp_path / "c.npz", codes=maps(10), condition=np.full((10, 3, 3), 7))
    with pytest.raises(DataError, match="outside 0..3"):
        load(path=str(tmp_path / "c.npz"), condition_codes=4)
