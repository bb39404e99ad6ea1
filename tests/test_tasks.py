"""Tasks: whole-word masking statistics, MLM metrics, image/text classification, fine-tuning, CLI round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.test_training import tiny_mlm, write_corpus
from typer.testing import CliRunner

from perceiver_io.adapters.text import CLS_ID, MASK_ID, NUM_SPECIAL_TOKENS, PAD_ID, SEP_ID
from perceiver_io.cli import app
from perceiver_io.tasks import build_config, get_task_class
from perceiver_io.tasks.mlm import IGNORE_INDEX, frame, mask_window, random_byte_mask, whole_word_mask
from perceiver_io.training import Trainer


def test_whole_word_masking_statistics():
    rng = np.random.default_rng(0)
    words = ["alpha", "be", "gamma", "delta", "x", "epsilon", "zeta", "eta!", "theta,"]
    n_words = n_chosen = 0
    modes = np.zeros(4)
    for i in range(400):
        text = " ".join(rng.choice(words, size=20)).encode()
        ids = frame(text, 160)
        inputs, labels, mode = whole_word_mask(ids, torch.Generator().manual_seed(i), 0.15)
        special = ids < NUM_SPECIAL_TOKENS
        assert (labels[special] == IGNORE_INDEX).all() and (mode[special] == 0).all()
        assert (
            inputs[0] == CLS_ID and inputs[ids == SEP_ID].eq(SEP_ID).all() and (inputs[ids == PAD_ID] == PAD_ID).all()
        )
        assert (labels[mode > 0] == ids[mode > 0]).all()
        assert (inputs[mode == 1] == MASK_ID).all() and (inputs[mode == 3] == ids[mode == 3]).all()
        assert (inputs[mode == 2] >= NUM_SPECIAL_TOKENS).all()
        # whole words: every byte of a word shares its mode, whitespace is never chosen
        body = ids[1 : 1 + len(text)]
        m = mode[1 : 1 + len(text)]
        assert (m[body == 32 + NUM_SPECIAL_TOKENS] == 0).all()
        start = 0
        for w in text.split(b" "):
            seg = m[start : start + len(w)]
            assert (seg == seg[0]).all()
            n_words += 1
            if seg[0] > 0:
                n_chosen += 1
                modes[int(seg[0])] += 1
            start += len(w) + 1
    assert n_chosen / n_words == pytest.approx(0.15, abs=0.005)  # round(0.15 · 20) = 3 of 20 words
    frac = modes[1:] / modes[1:].sum()
    np.testing.assert_allclose(frac, [0.8, 0.1, 0.1], atol=0.03)


def test_random_byte_masking_statistics_and_mixed_masking():
    rng = np.random.default_rng(1)
    words = ["alpha", "be", "gamma", "delta", "x", "epsilon"]
    chosen = maskable = 0
    modes = np.zeros(4)
    for i in range(300):
        text = " ".join(rng.choice(words, size=20)).encode()
        ids = frame(text, 160)
        inputs, labels, mode = random_byte_mask(ids, torch.Generator().manual_seed(i), 0.15)
        can = (ids >= NUM_SPECIAL_TOKENS) & (ids != 32 + NUM_SPECIAL_TOKENS)
        assert (mode[~can] == 0).all() and (labels[~can] == IGNORE_INDEX).all()  # never special ids or spaces
        assert (labels[mode > 0] == ids[mode > 0]).all() and (inputs[mode == 1] == MASK_ID).all()
        assert (inputs[mode == 3] == ids[mode == 3]).all() and (inputs[mode == 0] == ids[mode == 0]).all()
        chosen += int((mode > 0).sum())
        maskable += int(can.sum())
        modes += np.bincount(mode[mode > 0].numpy(), minlength=4)
    assert chosen / maskable == pytest.approx(0.15, abs=0.01)
    np.testing.assert_allclose(modes[1:] / modes[1:].sum(), [0.8, 0.1, 0.1], atol=0.03)
    # "mixed": per window either whole-word or random-byte masking, both kinds appear
    kinds = set()
    for i in range(40):
        ids = frame(b"alpha beta gamma delta epsilon zeta eta theta iota kappa", 64)
        a = mask_window(ids, torch.Generator().manual_seed(i), 0.15, "mixed")
        g = torch.Generator().manual_seed(i)
        whole = torch.rand((), generator=g) < 0.5
        b = (whole_word_mask if whole else random_byte_mask)(ids, g, 0.15)
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
        kinds.add(bool(whole))
    assert kinds == {True, False}


def test_mlm_collate_is_deterministic_and_evaluate_reports_baselines(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt")
    task = get_task_class("mlm")(
        build_config("mlm", overrides=tiny_mlm(corpus, tmp_path / "r", **{"data.seq_len": 96})), log=lambda m: None
    )
    task.setup()
    items = [task.train_data[i] for i in range(4)]
    a, b = task.collate(items, [1, 2, 3, 4]), task.collate(items, [1, 2, 3, 4])
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["input_ids"], task.collate(items, [5, 6, 7, 8])["input_ids"])
    assert a["input_ids"].shape == (4, 96) and task.count(a) > 0
    torch.manual_seed(0)
    model = task.build_model().eval()
    m = task.evaluate(model, "valid")
    assert set(m) >= {"accuracy", "bits_per_byte", "baseline_most_frequent_accuracy", "baseline_unigram_bits_per_byte"}
    assert 0 < m["baseline_most_frequent_accuracy"] < 0.5 and 2.0 < m["baseline_unigram_bits_per_byte"] < 8.0
    assert m["bits_per_byte"] > 5.0  # untrained: about log2(256) = 8
    lines = task.report(model, m)
    assert any("baseline: unigram" in ln for ln in lines) and any("input :" in ln for ln in lines)


def test_train_mlm_cli_then_predict_and_evaluate(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt")
    run = tmp_path / "run"
    args = [f"{k}={'null' if v is None else v}" for k, v in tiny_mlm(corpus, run, **{"train.plot": True}).items()]
    res = CliRunner().invoke(app, ["train", "mlm", *args])
    assert res.exit_code == 0, res.output
    assert "baseline: most frequent byte" in res.output and str(run / "model") in res.output
    assert (run / "metrics.csv").is_file() and (run / "curves.png").is_file() and (run / "model").is_dir()
    res = CliRunner().invoke(
        app, ["predict", "fill-mask", "The quick [MASK][MASK][MASK][MASK][MASK] fox", "--model", str(run / "model")]
    )
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["evaluate", "mlm", "--run", str(run)])
    assert res.exit_code == 0 and "Perceiver IO (this run)" in res.output, res.output
    res = CliRunner().invoke(
        app,
        [
            "evaluate",
            "mlm",
            "--run",
            str(run),
            "--split",
            "valid",
            "--checkpoint",
            str(sorted((run / "checkpoints").glob("step-*.pt"))[-1]),
        ],
    )
    assert res.exit_code == 0 and "accuracy" in res.output, res.output


TINY_CLS = {
    "model.encoder.num_latents": 8,
    "model.encoder.num_latent_channels": 32,
    "model.encoder.num_self_attends_per_block": 1,
    "model.encoder.num_cross_attention_heads": 1,
    "model.encoder.num_self_attention_heads": 2,
    "model.decoder.num_query_channels": 32,
    "model.decoder.num_heads": 1,
    "train.batch_size": 8,
    "train.max_steps": 3,
    "train.warmup_steps": 1,
    "train.eval_batches": 1,
    "train.progress": False,
    "train.tensorboard": False,
    "train.plot": False,
}


def test_image_classification_on_synthetic_digits(tmp_path, monkeypatch):
    import perceiver_io.data as data

    def fake(name, split, cache_dir=None):
        g = torch.Generator().manual_seed({"train": 0, "valid": 1, "test": 2}[split])
        return torch.randint(0, 256, (32, 28, 28), dtype=torch.uint8, generator=g).numpy(), np.arange(32) % 10

    monkeypatch.setattr(data, "load_image_classification", fake)
    over = {
        **TINY_CLS,
        "model.image.num_bands": 4,
        "model.encoder.cross_attention_qk_channels": 32,
        "model.encoder.cross_attention_v_channels": 32,
        "data.dataset": "synthetic",
        "train.run_dir": str(tmp_path / "img"),
    }
    task = get_task_class("image-classification")(
        build_config("image-classification", overrides=over), log=lambda m: None
    )
    result = Trainer(task, log=lambda m: None).fit()
    assert set(result.metrics) >= {"accuracy", "loss"} and 0 <= result.metrics["accuracy"] <= 1
    assert "top-1 accuracy" in task.report(result.model, {})[0]


def test_text_classification_scratch_and_finetune(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(60):
        good = i % 2 == 0
        word = rng.choice(["wonderful", "great", "moving"] if good else ["dull", "awful", "boring"])
        lines.append(f"{i}\t{1.5 if good else -1.5}\tThis film is {word} and long.")
    sent = tmp_path / "sent.txt"
    sent.write_text("\n".join(lines), encoding="latin-1")
    corpus = write_corpus(tmp_path / "c.txt")
    mlm_run = tmp_path / "mlm"
    mlm_task = get_task_class("mlm")(
        build_config("mlm", overrides=tiny_mlm(corpus, mlm_run, **{"train.max_steps": 2})), log=lambda m: None
    )
    Trainer(mlm_task, log=lambda m: None).fit()
    base = {**TINY_CLS, "data.path": str(sent), "data.seq_len": 32}
    for init in (None, str(mlm_run)):
        over = {**base, "train.run_dir": str(tmp_path / f"cls-{init is None}"), "init_from": init}
        cfg = build_config("text-classification", overrides=over)
        task = get_task_class("text-classification")(cfg, log=lambda m: None)
        if init is not None:
            assert cfg.model.encoder.num_latents == 8 and cfg.model.text.max_seq_len == 32
            model = task.build_model()
            from perceiver_io.checkpoints import from_pretrained

            mlm = from_pretrained(mlm_run / "model")
            for k, v in mlm.encoder.state_dict().items():
                assert torch.equal(model.encoder.state_dict()[k], v), k
            assert torch.equal(model.input_adapter.token_embedding.weight, mlm.input_adapter.token_embedding.weight)
        result = Trainer(task, log=lambda m: None).fit()
        assert 0 <= result.metrics["accuracy"] <= 1


def test_example_seeds_that_differ_by_multiples_of_2_to_the_32_give_different_streams():
    # torch's CPU generator keeps the low 32 bits of a seed; the trainer's example seeds for run seed 2
    # are run seed 0's plus 2^32 - 2, so without mixing two runs would mask the same bytes
    from perceiver_io.tasks.base import example_generator, mix_seed

    draws = {tuple(torch.rand(4, generator=example_generator(5 + k * 2**32)).tolist()) for k in range(4)}
    assert len(draws) == 4
    assert torch.equal(torch.rand(4, generator=example_generator(7)), torch.rand(4, generator=example_generator(7)))
    assert all(0 <= mix_seed(s) < 2**32 for s in (0, 1, 2**40, 2**63, -3))
    assert len({mix_seed(s) for s in range(10_000)}) == 10_000


def test_copy_warm_up_ends_after_unmasked_loss_steps_also_across_a_resume(tmp_path):
    # the trainer tells the task which step it collates; the auxiliary visible-byte loss stops at
    # data.unmasked_loss_steps, and a resumed run continues with the same schedule
    corpus = write_corpus(tmp_path / "c.txt")
    seen: list[tuple[int, bool]] = []

    cls = get_task_class("mlm")

    class Recording(cls):
        def collate(self, items, seeds, masking=None):
            batch = super().collate(items, seeds, masking)
            seen.append((self.step, "visible_labels" in batch))  # (evaluation collates at the last step too)
            return batch

    warm_up = {"data.unmasked_loss_weight": 0.5, "data.unmasked_loss_steps": 3}
    overrides = tiny_mlm(corpus, tmp_path / "run", **warm_up, **{"train.stop_after_steps": 4})
    Trainer(Recording(build_config("mlm", overrides=overrides), log=lambda m: None), log=lambda m: None).fit()
    overrides["train.stop_after_steps"] = None
    Trainer(Recording(build_config("mlm", overrides=overrides), log=lambda m: None), log=lambda m: None).fit()
    assert sorted({s for s, _ in seen}) == list(range(6))
    assert all(has == (s < 3) for s, has in seen)


def test_a_saved_config_with_mapping_fields_restores_exactly():
    """``mask_probs`` is a mapping: a run's flattened config (``model.mask_probs.label``) must restore it."""
    from perceiver_io.training.overrides import flatten

    cfg = build_config("av-autoencode", overrides={"model.mask_probs": {"label": 0.25, "audio": 0.1}})
    assert build_config("av-autoencode", base=flatten(cfg.to_dict())) == cfg
    one = build_config("av-autoencode", overrides={"model.mask_probs.label": 1.0, "model.mask_probs.image": 0.2})
    assert one.model.mask_probs == {"label": 1.0, "image": 0.2}


@pytest.mark.parametrize(
    "task",
    ["mlm", "clm", "flow", "image-classification", "text-classification", "hip-mae", "av-autoencode", "av-classify"],
)
def test_config_files_hold_the_built_in_defaults(task):
    """``configs/TASK.yaml`` says it is the task's defaults written out; keep it so."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "configs" / f"{task}.yaml"
    assert build_config(task, str(path)) == build_config(task)
