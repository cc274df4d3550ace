"""``--help`` names the optimizers and schedulers a model accepts, and a wrong name is refused
before training with close matches."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotimm_trainer import cli

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "classification_quickstart.yaml"


def test_model_help_lists_optimizer_and_scheduler_names(capsys):
    with pytest.raises(SystemExit):
        cli.build_cli(["fit", "--model.help", "ImageClassifier"])
    out = " ".join(capsys.readouterr().out.split())
    # The option's own entry (the last mention; the first is the usage line), up to the next.
    optimizer_help = out[out.rindex("--model.optimizer OPTIMIZER") :]
    optimizer_help = optimizer_help[: optimizer_help.index("--model.lr LR")]
    for name in ("adamw", "sgd", "rmsprop", "lamb", "lion", "muon"):
        assert f"``{name}``" in optimizer_help, name
    scheduler_help = out[out.rindex("--model.scheduler SCHEDULER") :]
    scheduler_help = scheduler_help[: scheduler_help.index("--model.scheduler_kwargs")]
    for name in ("cosine", "onecycle", "plateau", "step", "wsdlrscheduler"):
        assert f"``{name}``" in scheduler_help, name


@pytest.mark.parametrize(
    ("arg", "value", "suggestion"),
    [("optimizer", "adamx", "adamw"), ("scheduler", "cosin", "cosine")],
)
def test_a_wrong_name_is_refused_with_close_matches(tmp_path, arg, value, suggestion):
    args = ["fit", "--config", str(EXAMPLE), f"--model.init_args.{arg}", value]
    args += ["--trainer.default_root_dir", str(tmp_path)]
    with pytest.raises(
        ValueError, match=rf"Unknown {arg} '{value}'\. Did you mean: [^?]*{suggestion}"
    ):
        cli.build_cli(args)
    assert not (tmp_path / "version_0").exists()  # refused before a run folder is made
