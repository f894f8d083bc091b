"""Plugin discovery through real entry points, and every way a plugin can be broken.

Broken plugins come in two forms: hand-made ``EntryPoint``s registered in-process, and a fake
installed distribution (a ``.dist-info`` folder and a module on ``sys.path``), which Python's
own ``importlib.metadata`` discovers exactly like a pip-installed package.
"""

from __future__ import annotations

import json
import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest
from conftest import TINY

import torch

from pixelcnn_cli import ImageData, TensorImageDataset, registry
from pixelcnn_cli.config import ArchitectureConfig
from pixelcnn_cli.errors import PluginError

BUILTIN_DATASETS = {"mnist", "fashionmnist", "cifar", "cifar10", "mnist-sample", "codes"}
FAKE_MODULES = ("pixelcnn_fake_plugins", "pixelcnn_other_fake")


class Working:
    """A valid dataset plugin (never loaded here)."""

    name = "working"

    def load(self, data_dir, download, options=None):
        raise AssertionError("never called")


class Speckles:
    """Sixteen random 5x5 grey images: enough to train a model for a checkpoint in a second."""

    name = "speckles"

    def load(self, data_dir, download, options=None):
        images = torch.randint(0, 256, (16, 1, 5, 5), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
        split = TensorImageDataset(images)
        return ImageData(1, 5, 5, None, split, split)


class ReturnsADict:
    name = "returns-a-dict"

    def load(self, data_dir, download, options=None):
        return {"images": []}


class BuildsAString:
    name = "builds-a-string"
    options_model = ArchitectureConfig

    def build(self, options, spec):
        return "a model"


class NotAPlugin:
    """Has neither ``load`` nor ``build``."""


class NeedsArguments:
    def __init__(self, required):  # the registry instantiates plugin classes with no arguments
        self.required = required


class ModelWithoutOptions:
    name = "no-options"

    def build(self, options, spec):
        raise AssertionError("never called")


class DatasetWithBadOptions:
    name = "bad-options"
    options_model = dict  # not a pydantic model

    def load(self, data_dir, download, options):
        raise AssertionError("never called")


@pytest.fixture(autouse=True)
def fresh_registries():
    """Every test starts from, and leaves, registries that rediscover the installed plugins."""
    registry.datasets.reset()
    registry.models.reset()
    yield
    registry.datasets.reset()
    registry.models.reset()
    for name in FAKE_MODULES:
        sys.modules.pop(name, None)


def install_fake(root, dist: str, version: str, entry_points: str, module: str | None = None, source: str = "") -> None:
    """Write ``dist``'s ``.dist-info`` (and its module) under ``root`` as pip would."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    if module:
        (root / f"{module}.py").write_text(textwrap.dedent(source))


FAKE_SOURCE = """
    from pixelcnn_cli.models.gated import GatedPixelCNNPlugin


    class FakeGated(GatedPixelCNNPlugin):
        name = "fakegated"


    class StolenMNIST:
        name = "mnist"

        def load(self, data_dir, download, options=None):
            raise AssertionError("a third-party plugin must never replace a built-in")


    NOT_A_PLUGIN = 42
"""


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    """A folder on ``sys.path`` holding the distribution ``pixelcnn-fake`` 1.2.3 and its module."""
    site = tmp_path / "site"
    install_fake(
        site, "pixelcnn-fake", "1.2.3",
        """
        [pixelcnn.datasets]
        mnist = pixelcnn_fake_plugins:StolenMNIST
        fake-missing = pixelcnn_no_such_module:Plugin
        fake-number = pixelcnn_fake_plugins:NOT_A_PLUGIN
        twin = pixelcnn_fake_plugins:StolenMNIST

        [pixelcnn.models]
        fakegated = pixelcnn_fake_plugins:FakeGated
        """,
        "pixelcnn_fake_plugins", FAKE_SOURCE,
    )
    install_fake(site, "pixelcnn-other-fake", "0.3", "[pixelcnn.datasets]\ntwin = pixelcnn_other_fake:Twin\n",
                 "pixelcnn_other_fake", "class Twin:\n    def load(self, data_dir, download, options=None): ...\n")
    monkeypatch.syspath_prepend(str(site))
    registry.datasets.reset()
    registry.models.reset()
    return site


def rows_by_name(cli, *args) -> dict[tuple[str, str | None], dict]:
    result = cli("plugins", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return {(row["name"], row["distribution"]): row for row in json.loads(result.stdout)}


# -- the real entry points ------------------------------------------------------------------------


def test_builtins_come_through_the_packages_own_entry_points():
    for name in BUILTIN_DATASETS:
        entry = registry.datasets.entry(name)
        assert entry is not None and entry.distribution == "pixelcnn-cli" and entry.version
        assert entry.entry_point.group == "pixelcnn.datasets"
    assert registry.datasets.entry("cifar").value == registry.datasets.entry("cifar10").value
    gated = registry.models.entry("gated")
    assert gated.distribution == "pixelcnn-cli" and gated.value == "pixelcnn_cli.models.gated:GatedPixelCNNPlugin"
    assert BUILTIN_DATASETS <= set(registry.datasets.names())


def test_discovery_is_lazy():
    entries = registry.datasets.entries()
    assert all(entry.status == "not loaded" for entry in entries.values())
    registry.datasets.get("mnist-sample")
    assert entries["mnist-sample"].status == "ok"
    assert entries["mnist"].status == "not loaded"  # torchvision's loaders are not imported for nothing


def test_plugins_command_lists_every_plugin(cli):
    result = cli("plugins")
    assert result.exit_code == 0, result.stderr
    for name in (*BUILTIN_DATASETS, "gated"):
        assert name in result.stdout
    rows = rows_by_name(cli)
    assert rows[("gated", "pixelcnn-cli")]["group"] == "pixelcnn.models"
    assert all(row["loaded"] and row["status"] == "ok" and row["error"] is None for row in rows.values())
    assert {"name", "group", "distribution", "version", "entry_point", "status", "loaded", "error", "description"} <= set(
        rows[("mnist", "pixelcnn-cli")])


def test_unknown_names_list_the_available_ones(cli):
    with pytest.raises(PluginError, match=r"unknown dataset 'nope'; available: .*mnist-sample"):
        registry.datasets.get("nope")
    result = cli("train", "--model", "nope", "--dataset", "mnist-sample", *TINY)
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: unknown model 'nope'; available: ") and "gated" in result.stderr


# -- broken plugins, in-process ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cause"),
    [
        ("pixelcnn_no_such_module:Plugin", "failed to load: ModuleNotFoundError: No module named 'pixelcnn_no_such_module'"),
        ("test_registry:Missing", "failed to load: AttributeError"),
        ("test_registry:NeedsArguments", "failed to load: TypeError"),
        ("test_registry:NotAPlugin", "wrong kind of object: a dataset plugin needs a load(data_dir, download, options) method"),
        ("test_registry:BUILTIN_DATASETS", "wrong kind of object: a dataset plugin needs a load"),
        ("test_registry:DatasetWithBadOptions", "wrong kind of object: its options_model must be a pydantic model class"),
    ],
)
def test_a_broken_dataset_plugin_is_reported_and_the_rest_works(cli, value, cause):
    registry.datasets.add(EntryPoint(name="broken", value=value, group=registry.DATASETS))
    with pytest.raises(PluginError) as raised:
        registry.datasets.get("broken")
    assert str(raised.value).startswith(f"dataset plugin 'broken' ({value}): {cause}")
    assert registry.datasets.get("mnist-sample").name == "mnist-sample"

    rows = rows_by_name(cli)
    broken = rows[("broken", None)]
    assert not broken["loaded"] and broken["status"] == "error" and broken["error"].startswith(cause)
    assert all(row["loaded"] for key, row in rows.items() if key != ("broken", None))
    table = cli("plugins")
    assert table.exit_code == 0 and "1 plugin(s) failed" in table.stdout

    result = cli("train", "--dataset", "broken", *TINY)  # asked for: one line, with the cause
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {raised.value}"]


def test_a_model_plugin_must_build_and_declare_options(cli):
    registry.models.add(EntryPoint(name="no-build", value="test_registry:NotAPlugin", group=registry.MODELS))
    registry.models.add(EntryPoint(name="no-options", value="test_registry:ModelWithoutOptions", group=registry.MODELS))
    with pytest.raises(PluginError, match="needs a build"):
        registry.models.get("no-build")
    with pytest.raises(PluginError, match="options_model must be a pydantic model class, not NoneType"):
        registry.models.get("no-options")
    result = cli("inspect-masks", "--model", "no-options")
    assert result.exit_code == 1 and result.stderr.startswith("error: model plugin 'no-options'")
    assert registry.models.get("gated").name == "gated"


def test_a_plugin_that_hands_back_the_wrong_object(cli):
    registry.datasets.add(EntryPoint(name="returns-a-dict", value="test_registry:ReturnsADict", group=registry.DATASETS))
    registry.datasets.add(EntryPoint(name="speckles", value="test_registry:Speckles", group=registry.DATASETS))
    registry.models.add(EntryPoint(name="builds-a-string", value="test_registry:BuildsAString", group=registry.MODELS))
    result = cli("train", "--dataset", "returns-a-dict", *TINY)
    assert result.exit_code == 1 and result.stderr.strip().splitlines() == [
        "error: dataset plugin 'returns-a-dict' returned dict, not ImageData"]
    result = cli("train", "--dataset", "speckles", "--model", "builds-a-string", *TINY)
    assert result.exit_code == 1 and result.stderr.strip().splitlines() == [
        "error: model plugin 'builds-a-string' built str, not a torch nn.Module"]


def test_in_process_duplicates_make_the_name_unusable_but_never_a_builtin():
    registry.datasets.add(EntryPoint(name="mnist", value="test_registry:NotAPlugin", group=registry.DATASETS))
    registry.datasets.add(EntryPoint(name="dup", value="test_registry:Working", group=registry.DATASETS))
    registry.datasets.add(EntryPoint(name="dup", value="test_registry:NotAPlugin", group=registry.DATASETS))
    assert registry.datasets.get("mnist").name == "mnist"  # the built-in keeps its name
    intruder = next(e for e in registry.datasets.all_entries() if e.name == "mnist" and e.distribution is None)
    assert "name 'mnist' is taken by pixelcnn-cli" in intruder.error
    with pytest.raises(PluginError, match="name 'dup' is claimed by both test_registry:NotAPlugin and test_registry:Working"):
        registry.datasets.get("dup")


# -- a fake installed distribution -------------------------------------------------------------


def test_a_fake_distribution_is_discovered_and_its_problems_reported(cli, fake_site):
    rows = rows_by_name(cli)
    assert rows[("fakegated", "pixelcnn-fake")]["loaded"] and rows[("fakegated", "pixelcnn-fake")]["version"] == "1.2.3"
    assert rows[("mnist", "pixelcnn-cli")]["loaded"]
    stolen = rows[("mnist", "pixelcnn-fake")]
    assert stolen["status"] == "error" and "name 'mnist' is taken by pixelcnn-cli" in stolen["error"]
    missing = rows[("fake-missing", "pixelcnn-fake")]
    assert missing["error"] == "failed to load: ModuleNotFoundError: No module named 'pixelcnn_no_such_module'"
    assert rows[("fake-number", "pixelcnn-fake")]["error"].startswith("wrong kind of object")
    for dist in ("pixelcnn-fake", "pixelcnn-other-fake"):
        assert "claimed by both pixelcnn-fake 1.2.3 and pixelcnn-other-fake 0.3" in rows[("twin", dist)]["error"]

    table = cli("plugins")
    assert table.exit_code == 0
    assert "pixelcnn-fake" in table.stdout and "5 plugin(s) failed" in table.stdout

    for name, cause in [("fake-missing", "(pixelcnn-fake 1.2.3): failed to load: ModuleNotFoundError"),
                        ("twin", "is claimed by both pixelcnn-fake 1.2.3 and pixelcnn-other-fake 0.3")]:
        result = cli("train", "--dataset", name, *TINY)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1
        assert lines[0].startswith(f"error: dataset plugin {name!r} (") and cause in lines[0]
    assert registry.datasets.get("mnist").name == "mnist"


def test_the_environment_variable_switches_third_party_plugins_off(cli, fake_site, monkeypatch):
    registry.datasets.add(EntryPoint(name="in-process", value="test_registry:Working", group=registry.DATASETS))
    assert "fake-number" in registry.datasets.names()
    monkeypatch.setenv(registry.DISABLE_ENV, "1")
    assert set(registry.datasets.names()) == BUILTIN_DATASETS  # noticed without a reset
    assert registry.models.names() == ["gated", "pixelcnnpp", "pixelsnail"]  # the built-in ones
    with pytest.raises(PluginError, match=r"model plugin 'fakegated' \(pixelcnn-fake 1.2.3\) is switched off by PIXELCNN_DISABLE_PLUGINS=1"):
        registry.models.get("fakegated")

    rows = rows_by_name(cli)
    assert rows[("fakegated", "pixelcnn-fake")]["status"] == "disabled"
    assert not rows[("fakegated", "pixelcnn-fake")]["loaded"]
    assert rows[("in-process", None)]["status"] == "disabled"
    assert rows[("mnist", "pixelcnn-cli")]["loaded"] and rows[("gated", "pixelcnn-cli")]["loaded"]
    assert "pixelcnn_fake_plugins" not in sys.modules  # a switched-off plugin is never imported
    table = cli("plugins")
    assert "third-party plugins are switched off" in table.stdout and "failed" not in table.stdout

    result = cli("train", "--model", "fakegated", "--dataset", "mnist-sample", *TINY)
    assert result.exit_code == 1 and "switched off" in result.stderr and len(result.stderr.strip().splitlines()) == 1

    monkeypatch.setenv(registry.DISABLE_ENV, "0")
    assert registry.models.get("fakegated").name == "fakegated"


def test_a_checkpoint_says_which_distribution_to_install(cli, fake_site, monkeypatch, tmp_path):
    registry.datasets.add(EntryPoint(name="speckles", value="test_registry:Speckles", group=registry.DATASETS))
    result = cli("train", "--dataset", "speckles", "--model", "fakegated", "--epochs", "1", "--batch-size", "8",
                 "--epoch-samples", "0", "--run-name", "f", *TINY)
    assert result.exit_code == 0, result.stderr + result.stdout
    checkpoint = tmp_path / "runs" / "f" / "checkpoints" / "best.pt"

    monkeypatch.setenv(registry.DISABLE_ENV, "1")  # installed but switched off: say so
    result = cli("sample", "-m", checkpoint, "-c", "1")
    assert result.exit_code == 1 and "switched off by PIXELCNN_DISABLE_PLUGINS=1" in result.stderr
    monkeypatch.delenv(registry.DISABLE_ENV)

    sys.path.remove(str(fake_site))  # "uninstall" (monkeypatch restores sys.path afterwards)
    sys.modules.pop("pixelcnn_fake_plugins", None)
    registry.models.reset()
    expected = ["error: this checkpoint needs the model plugin 'fakegated', which is not installed; install pixelcnn-fake 1.2.3"]
    for command in (["sample", "-m", checkpoint, "-c", "1"], ["eval", "-m", checkpoint], ["inspect-masks", "-m", checkpoint]):
        result = cli(*command)
        assert result.exit_code == 1 and "Traceback" not in result.stdout + result.stderr
        assert result.stderr.strip().splitlines() == expected, command
