"""Config format 2 (plugin options nested) reads every run folder format 1 wrote.

tests/fixtures/run-format1 is a run saved by the code before the change (the `structure`
branch: `train --model ple --levels 2 --experts 16 --weighting gradnorm --alpha 2.5
--history 3 --history-encoder sasrec --history-heads 2` on a 60-user world): its config.json
holds every plugin's knobs flat and `"weighting": "gradnorm"`, its meta.json version 1.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mtrlib.config import FORMAT_VERSION, TrainConfig, migrate, validate
from mtrlib.errors import ConfigError
from mtrlib.runs import VERSION, list_runs, load_run

FIXTURE = Path(__file__).parent / "fixtures" / "run-format1"


@pytest.fixture()
def store(tmp_path) -> Path:
    shutil.copytree(FIXTURE, tmp_path / "runs" / "run-format1")
    return tmp_path / "runs"


def test_the_fixture_is_format_1():
    meta = json.loads((FIXTURE / "meta.json").read_text())
    cfg = json.loads((FIXTURE / "config.json").read_text())
    assert meta["version"] == 1 and cfg["weighting"] == "gradnorm" and cfg["model"]["n_experts"] == 4
    assert VERSION == FORMAT_VERSION == 2  # what new runs record


def test_a_format_1_run_opens_with_its_settings_nested(store):
    assert [r.id for r in list_runs(store)] == ["run-format1"]
    run = load_run("run-format1", store=store)
    c = run.config
    assert c.model.arch == "ple" and (c.model.options.levels, c.model.options.experts) == (2, [16])
    assert c.model.history_encoder == "sasrec" and c.model.history_options.heads == 2
    assert c.weighting.name == "gradnorm" and c.weighting.options.alpha == 2.5
    d = c.to_dict()  # only the chosen plugins' options are kept
    # PLE's own knobs only (the expert knobs added later by issue 28 at their defaults)
    assert set(d["model"]["options"]) == {"specific_experts", "shared_experts", "levels", "experts", "task_emb",
                                          "expert_norm", "expert_activation", "feature_gate", "self_gate"}
    assert (c.model.options.expert_norm, c.model.options.feature_gate) == ("none", False)
    assert d["weighting"] == {"name": "gradnorm", "options": {"alpha": 2.5}}
    assert "gradnorm_alpha" not in d and "n_experts" not in d["model"]
    assert validate(c, [t.name for t in run.tasks]) == []
    # the saved weights fit the network the migrated config builds, and it predicts
    model = run.model
    assert len(model.levels) == 2
    assert run.info.arch == "ple"


def test_the_flat_names_still_read_and_migration_is_idempotent():
    old = json.loads((FIXTURE / "config.json").read_text())
    cfg = TrainConfig.from_dict(old)
    assert cfg.model.levels == 2 and cfg.gradnorm_alpha == 2.5 and cfg.model.history_heads == 2  # flat aliases
    new = cfg.to_dict()
    assert migrate(new) == new and TrainConfig.from_dict(new).to_dict() == new
    assert TrainConfig.from_json(cfg.to_json()).to_dict() == new


def test_other_plugins_knobs_of_format_1_are_dropped_not_refused():
    """Format 1 stored every architecture's and method's knobs; only the chosen ones mean anything."""
    cfg = TrainConfig.from_dict({"weighting": "dwa", "gradnorm_alpha": 9.0, "dwa_temperature": 3.0,
                                 "model": {"arch": "mmoe", "levels": 3, "n_experts": 6}})
    assert cfg.weighting.options.temperature == 3.0 and cfg.model.options.n_experts == 6
    assert cfg.to_dict()["weighting"] == {"name": "dwa", "options": {"temperature": 3.0}}
    assert not hasattr(cfg.model.options, "levels")


def test_unknown_nested_option_is_refused_by_name():
    with pytest.raises(ConfigError, match="Unknown setting.*n_expert") as e:
        TrainConfig.from_dict({"model": {"arch": "mmoe", "options": {"n_expert": 3}}})
    assert "n_experts" in str(e.value)  # the fix lists what MMoE has


def test_old_names_are_aliases_wherever_a_setting_is_typed():
    """Sweep / lesson keys, nested lesson overrides and URL keys take format 1's flat names."""
    from mtrlib.experiments.settings import apply, resolve, with_overrides
    from mtrlib.share import from_params

    c = apply(TrainConfig(), {"weighting": "gradnorm", "gradnorm_alpha": "2", "model.n_experts": "6", "rho": "-0.5"})
    assert (c.weighting.name, c.weighting.options.alpha, c.model.options.n_experts) == ("gradnorm", 2.0, 6)
    assert c.data.world.correlation == -0.5 and resolve("history_heads").path == "model.history_options.heads"
    c = with_overrides(TrainConfig(), {"weighting": "dwa", "dwa_temperature": 3, "model": {"arch": "ple", "levels": 2}})
    assert (c.weighting.options.temperature, c.model.options.levels) == (3.0, 2)
    c, problems = from_params({"arch": "ple", "levels": "2", "weighting": "gradnorm", "alpha": "1", "henc": "din",
                               "hatt": "8,4"})
    assert not problems and (c.model.options.levels, c.weighting.options.alpha) == (2, 1.0)
    assert c.model.history_options.attention == [8, 4]


def test_a_sweep_over_architectures_with_an_architecture_knob():
    """The rule: plugin choices apply first; a knob the chosen plugin lacks is ignored for that point."""
    from mtrlib.experiments.settings import apply

    ple = apply(TrainConfig(), {"n_experts": 8, "arch": "ple", "experts": "32/16"})
    mmoe = apply(TrainConfig(), {"n_experts": 8, "arch": "mmoe", "experts": "32/16"})
    assert ple.model.arch == "ple" and not hasattr(ple.model.options, "n_experts")
    assert ple.model.options.experts == [32, 16]  # a knob both declare is kept
    assert (mmoe.model.options.n_experts, mmoe.model.options.experts) == (8, [32, 16])


def test_a_setup_keeps_its_group_across_the_format_change():
    """The fixture's meta.json holds the group the code before the nesting computed for its
    setup (PLE 2 levels, GradNorm alpha 2.5, SASRec history): the same config read by this code
    gets the same group, so repeats trained before and after group together (and sweeps and
    shared classroom runs find them)."""
    from mtrlib.runs import group_key
    meta = json.loads((FIXTURE / "meta.json").read_text())
    cfg = TrainConfig.from_json((FIXTURE / "config.json").read_text())
    assert cfg.to_dict()["weighting"]["options"]  # read in the nested shape
    assert group_key(cfg, meta["dataset"]) == meta["group"]
    other = TrainConfig.from_json((FIXTURE / "config.json").read_text())
    other.weighting.options.alpha = 1.0  # a different setup: another group
    assert group_key(other, meta["dataset"]) != meta["group"]
