"""config.toml is validated into typed settings; errors name the key."""

import pytest
from piu_engine.common.errors import ConfigError
from piu_engine.core.config import load_config, parse


def test_repository_config_is_valid():
    from conftest import ROOT

    cfg = load_config(ROOT / "config.toml")
    assert cfg.bench.dataset in cfg.datasets
    assert cfg.engine.device == "auto"


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"engine": {"device": "tpu"}}, "engine.device"),
        ({"engine": {"seed": "zero"}}, "engine.seed: expected an integer"),
        ({"metrics": {"nomus_lambda": 2}}, "metrics.nomus_lambda"),
        ({"bench": {"preset": "huge"}}, "bench.preset"),
        ({"bench": {"dataset": "mufac"}}, "bench.dataset"),
        ({"datasets": {"m": {"kind": "mufac"}}}, "datasets.m.root"),
        ({"datasets": {"m": {"kind": "imagenet", "root": "/x"}}}, "datasets.m.kind"),
        ({"methods": {"piu-fr": {"temprature": 2}}}, "methods.piu-fr.temprature"),
        ({"methods": {"magic": {}}}, "unknown method 'magic'"),
        ({"colour": {}}, "colour: unknown section"),
        ({"audit": {"seed": 3, "guide_seed": 3}}, "audit.guide_seed: must differ from audit.seed"),
    ],
)
def test_bad_values_name_the_key(doc, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse(doc)


def test_missing_explicit_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_env_var_selects_config(tmp_path, monkeypatch):
    p = tmp_path / "c.toml"
    p.write_text("[engine]\nseed = 7\n")
    monkeypatch.setenv("PIU_CONFIG", str(p))
    assert load_config().engine.seed == 7
    assert load_config().base_dir == tmp_path
