"""The command line guides: --version, its own description, choices, one optimizer set-up,
num_classes from the data, and predictions written to a folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from trainer_helpers import TinyLabelledImages, TinyModel

from autotimm_trainer import __version__, cli


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.build_cli(args)
    out = capsys.readouterr()
    return exit_info.value.code, out.out + out.err


def test_version_and_description(capsys):
    code, text = run_cli(["--version"], capsys)
    assert code == 0 and text.strip() == f"autotimm {__version__}"
    code, text = run_cli(["--help"], capsys)
    assert code == 0 and text.split("\n\n")[1].startswith("AutoTimm:")
    assert "Lightning" not in text.split("\n\n")[1]


def test_help_lists_choices_and_no_automatic_optimizer(capsys):
    code, text = run_cli(["fit", "--help"], capsys)
    assert code == 0
    flat = " ".join(text.split())
    assert "Literal['max', 'min']" in flat  # trainer.checkpoint_mode
    assert "'16-mixed'" in flat and "'bf16-mixed'" in flat  # trainer.precision
    # one way to set the optimizer: the model's own arguments
    assert "--optimizer" not in text and "--lr_scheduler" not in text
    code, text = run_cli(["fit", "--optimizer", "Adam"], capsys)
    assert code != 0 and "unrecognized arguments: --optimizer" in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--trainer.checkpoint_mode", "maxx"],
            "trainer.checkpoint_mode='maxx' is not one of: max, min. Did you mean: max?",
        ),
        (
            ["--trainer.precision", "16-mixd"],
            "trainer.precision='16-mixd' is not one of:",
        ),
    ],
)
def test_a_wrong_choice_is_rejected_with_suggestions(args, expected, capsys, tmp_path):
    code, text = run_cli(
        [
            "fit",
            "--model",
            "trainer_helpers.TinyModel",
            "--data",
            "trainer_helpers.TinyData",
            *args,
            "--trainer.default_root_dir",
            str(tmp_path),
        ],
        capsys,
    )
    assert code != 0 and expected in text
    assert not list(tmp_path.iterdir())  # nothing was built or written
    if "precision" in args[0]:
        assert "Did you mean: 16-mixed" in text


def test_choice_explanation_names_a_nested_argument():
    message = (
        'Parser key "data":\n  Does not validate\n  Errors:\n'
        "    - Problem with given class_path 'x.ImageDataModule':\n"
        '        Parser key "augmentation_preset":\n'
        "          Expected a typing.Literal['none', 'light', 'default', 'strong']. Got value: strng\n"
        "  Given value: NestedArg(key='augmentation_preset', val='strng')"
    )
    first = cli.explain_choice_error(message).splitlines()[0]
    assert first == (
        "data.augmentation_preset='strng' is not one of: none, light, default, strong. "
        "Did you mean: strong?"
    )
    assert cli.explain_choice_error("something else") == "something else"


def _config(tmp_path: Path, **model_args) -> Path:
    config = {
        "trainer": {
            "max_epochs": 1,
            "accelerator": "cpu",
            "default_root_dir": str(tmp_path / "runs"),
            "enable_progress_bar": False,
            "enable_model_summary": False,
        },
        "model": {"class_path": "trainer_helpers.TinyImageModel", "init_args": model_args},
        "data": {
            "class_path": "trainer_helpers.TinyLabelledImages",
            "init_args": {"batch_size": 4},
        },
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_num_classes_and_class_names_come_from_the_data(tmp_path):
    run = cli.build_cli(["fit", "--config", str(_config(tmp_path))])
    assert run.model.num_classes == 4 and run.model.class_names == ["ant", "bee", "cat", "dog"]
    assert isinstance(run.datamodule, TinyLabelledImages)
    # the run used the data module that was set up to tell num_classes, not a second copy
    assert run.datamodule.setup_calls == 2
    assert run.trainer.current_epoch == 1
    # the saved config holds the resolved values: the run is reproducible from it
    saved = yaml.safe_load((tmp_path / "runs" / "version_0" / "config.yaml").read_text())
    assert saved["model"]["init_args"]["num_classes"] == 4
    # given explicitly, the model's value is kept
    run = cli.build_cli(
        ["fit", "--config", str(_config(tmp_path, num_classes=4)), "--trainer.max_epochs", "0"]
    )
    assert run.model.num_classes == 4


def test_predict_writes_jsonl_and_drawn_images(tmp_path):
    config = _config(tmp_path, num_classes=4)
    run = cli.build_cli(["fit", "--config", str(config)])
    ckpt = run.trainer.best_model_path
    out = tmp_path / "out"
    cli.build_cli(
        [
            "predict",
            "--config",
            str(config),
            "--ckpt_path",
            ckpt,
            "--output_dir",
            str(out),
            "--draw",
            "true",
        ]
    )
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [line["index"] for line in lines] == list(range(12))
    assert all(len(line["probs"]) == 4 and line["labels"] in range(4) for line in lines)
    assert sum(lines[0]["probs"]) == pytest.approx(1.0, abs=1e-5)
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 12 and not list(out.glob("predictions.rank*"))
    from torchvision.io import read_image

    drawn = read_image(str(out / "0_image.png"))
    assert drawn.shape == (3, 16, 16) and int(drawn[:, :4, :4].min()) == 255


def test_predict_draw_needs_a_draw_hook(tmp_path):
    from trainer_helpers import TinyData

    from autotimm_trainer import AutoTrainer

    trainer = AutoTrainer(
        accelerator="cpu", logger=False, default_root_dir=tmp_path, enable_progress_bar=False
    )
    with pytest.raises(ValueError, match=r"draw=True needs TinyModel\.draw_prediction"):
        trainer.predict(TinyModel(), datamodule=TinyData(), output_dir=tmp_path / "o", draw=True)
    out = trainer.predict(TinyModel(), datamodule=TinyData(), output_dir=tmp_path / "p")
    lines = (tmp_path / "p" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 32 == sum(len(b) for b in out)
    assert json.loads(lines[3]) == {"index": 3, "prediction": int(out[0][3])}
