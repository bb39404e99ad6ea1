"""Perceiver AR: causality, cached = uncached generation, padding, sampling filters, errors, task and CLI."""

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import perceiver_io
from perceiver_io.cli import app
from perceiver_io.generation import process_logits, sample_next_token, top_k_filter, top_p_filter
from perceiver_io.models.perceiver_ar import PerceiverAR, _encode_stops, causal_lm_loss

CTX, N = 24, 8  # a context and latent window that a 45-token generation overflows several times


def tiny(dtype=torch.float32, **overrides) -> PerceiverAR:
    """``test-perceiver-ar`` with a 24-token context and 8 latents, every weight perturbed so that the
    (zero-initialised) output projection and all layers are informative (logits of size ~2); eval mode."""
    torch.manual_seed(0)
    kwargs = {"max_context_length": CTX, "num_latents": N, **overrides}
    model = perceiver_io.create_model("test-perceiver-ar", **kwargs).eval().to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def ids(*shape: int) -> torch.Tensor:
    return torch.randint(6, 262, shape)


def logits_of(model, x, mask=None, **encoder_kwargs):
    """Logits ``(B, n, V)`` from input embeddings ``x (B, L, C)`` (so that gradients reach them)."""
    return model.head.logits(model.encoder(x, mask, **encoder_kwargs))


# -- causality -------------------------------------------------------------------------------------


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("num_latents", [N, 20])  # 20: every position is a latent (prefix positions too)
def test_logits_never_depend_on_later_inputs(training, num_latents):
    model = tiny(prefix_dropout=0.5, dropout=0.1, absolute_positions="sinusoidal").train(training)
    length = 20
    x = model.input_adapter.embed(ids(2, length)).detach().requires_grad_(True)
    n = min(num_latents, length)
    for i in range(n):
        pos = length - n + i
        torch.manual_seed(i)  # reproducible prefix subsets and dropout
        out = logits_of(model, x, num_latents=num_latents)
        (grad,) = torch.autograd.grad(out[:, i].square().sum(), x)
        assert torch.all(grad[:, pos + 1 :] == 0), f"latent {i} (position {pos}) sees later inputs"
        assert grad[:, pos].abs().sum() > 0  # its own input
        if pos > 0 and not training:
            assert grad[:, :pos].abs().sum() > 0  # and earlier ones (the prefix included)


def test_padding_is_invisible():
    model = tiny()
    x = model.input_adapter.embed(ids(1, 12)).detach().requires_grad_(True)
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[:, :4] = False  # left padding: the 8 latents are the 8 real tokens
    out = logits_of(model, x, mask)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    assert torch.all(grad[:, :4] == 0) and grad[:, 4:].abs().sum() > 0
    torch.testing.assert_close(out, logits_of(model, x[:, 4:]), atol=1e-5, rtol=1e-5)


def test_shorter_prompt_and_padding_through_forward():
    model = tiny()
    row = ids(1, 5)
    padded = torch.cat([torch.zeros(1, 7, dtype=torch.long), row], 1)
    mask = padded != 0
    full = model(padded, mask).logits  # (1, 8, V): three padded latents, five real
    short = model(row)  # shorter than N: every position is a latent
    assert short.logits.shape == (1, 5, 262) and short.latents.shape == (1, 5, 32)
    torch.testing.assert_close(full[:, -5:], short.logits, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(full).all()


# -- generation: cached = uncached = an independent reference ---------------------------------------


def reference_generate(model, prompt: torch.Tensor, steps: int) -> tuple[list[int], torch.Tensor]:
    """Greedy generation by re-running the encoder on the window the documented semantics define:
    the prompt (last CTX tokens) with min(N, P) latents; then one more latent per token until a
    token finds N latents, which recomputes over the last CTX tokens with N/2 latents."""
    seq = prompt[0, -model.config.max_context_length :].tolist()
    ctx, n_lat = model.config.max_context_length, model.config.num_latents
    n, start = min(n_lat, len(seq)), 0
    out, logits = [], []

    def step_logits():
        x = model.input_adapter.embed(torch.tensor([seq[start:]]))  # no mask: the plain window
        return model.head.logits(model.encoder(x, num_latents=n, max_key_distance=ctx)[:, -1])[0]

    with torch.no_grad():
        lg = step_logits()
        for _ in range(steps):
            logits.append(lg)
            token = int(lg.argmax())
            out.append(token)
            seq.append(token)
            if n == n_lat:
                n, start = n_lat // 2, max(len(seq) - ctx, 0)
            else:
                n += 1
            lg = step_logits()
    return out, torch.stack(logits)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"absolute_positions": "sinusoidal"}, {"rotary_fraction": 1.0, "num_self_attention_layers": 3}],
    ids=["rotary", "rotary+sinusoidal", "full-rotary-3-layers"],
)
@pytest.mark.parametrize("prompt_len", [3, 11, 30])  # < N, between N and the context, > context
@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-5), (torch.float64, 1e-10)], ids=["fp32", "fp64"])
def test_cached_equals_uncached_equals_reference(overrides, prompt_len, dtype, atol):
    model = tiny(dtype, **overrides)
    prompt = ids(1, prompt_len)
    steps = 45  # 45 + prompt > the context; a recompute every N/2 + 1 = 5 tokens
    cached = model.generate(prompt, steps, output_logits=True)
    uncached = model.generate(prompt, steps, output_logits=True, use_cache=False)
    tokens, ref_logits = reference_generate(model, prompt, steps)
    assert cached.new_tokens[0].tolist() == uncached.new_tokens[0].tolist() == tokens
    assert len(set(tokens)) > 5  # a non-trivial continuation
    torch.testing.assert_close(cached.logits[0].double(), ref_logits.double(), atol=atol, rtol=0)
    torch.testing.assert_close(uncached.logits[0].double(), ref_logits.double(), atol=atol, rtol=0)


def test_sampled_generation_cached_equals_uncached():
    model = tiny()
    prompt = ids(2, 6)
    kw = dict(do_sample=True, temperature=0.9, top_k=50, top_p=0.9, output_logits=True)
    a = model.generate(prompt, 40, generator=torch.Generator().manual_seed(1), **kw)
    b = model.generate(prompt, 40, generator=torch.Generator().manual_seed(1), use_cache=False, **kw)
    assert torch.equal(a.new_tokens, b.new_tokens)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=0)


def test_terminal_relative_positions_cached_equals_uncached():
    """Rotary logits depend on position differences only, so the cached terminal-relative positions
    (fixed at the last recompute) give the uncached ones up to rounding."""
    model = tiny(position_origin="end")
    prompt = ids(1, 10)
    a = model.generate(prompt, 30, output_logits=True)
    b = model.generate(prompt, 30, output_logits=True, use_cache=False)
    assert torch.equal(a.new_tokens, b.new_tokens)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="position_origin='start' or use_cache=False"):
        tiny(position_origin="end", absolute_positions="sinusoidal").generate(prompt, 2)


@pytest.mark.parametrize("use_cache", [True, False])
def test_left_and_right_padded_batches_equal_per_row_generation(use_cache):
    model = tiny()
    rows = [ids(1, 3), ids(1, 11), ids(1, 20), ids(1, 30)]  # the last is truncated to the context
    length = 30
    left = torch.zeros(len(rows), length, dtype=torch.long)
    right = torch.zeros_like(left)
    for i, r in enumerate(rows):
        left[i, length - r.shape[1] :] = r[0]
        right[i, : r.shape[1]] = r[0]
    steps = 36
    gl = model.generate(left, steps, input_mask=left != 0, output_logits=True, use_cache=use_cache)
    gr = model.generate(right, steps, attention_mask=right != 0, output_logits=True, use_cache=use_cache)
    for i, r in enumerate(rows):
        g = model.generate(r, steps, output_logits=True, use_cache=use_cache)
        assert torch.equal(gl.new_tokens[i], g.new_tokens[0]) and torch.equal(gr.new_tokens[i], g.new_tokens[0])
        torch.testing.assert_close(gl.logits[i], g.logits[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(gr.logits[i], g.logits[0], atol=1e-5, rtol=0)
    # the returned sequences: left-padded prompts (truncated to the context), then the new tokens
    assert torch.equal(gl.sequences, gr.sequences) and gl.sequences.shape == (4, CTX + steps)
    assert gl.sequence_mask[:, :CTX].sum(1).tolist() == [3, 11, 20, 24]


def test_prompt_longer_than_the_context_is_truncated():
    model = tiny()
    prompt = ids(1, 50)
    a = model.generate(prompt, 10, output_logits=True)
    b = model.generate(prompt[:, -CTX:], 10, output_logits=True)
    assert torch.equal(a.new_tokens, b.new_tokens) and torch.equal(a.sequences, b.sequences)
    with pytest.raises(ValueError, match=r"more than max_context_length \(24\); generate\(\) truncates"):
        model(prompt)


def test_stop_sequences_eos_streaming_and_padding_after_stop():
    model = tiny()
    prompt = ids(2, 5)
    free = model.generate(prompt, 20)
    row0 = free.new_tokens[0].tolist()
    full = prompt[0].tolist() + row0
    stop = row0[6:8]
    # the first completed stop (it may begin in the prompt, it ends with a generated token)
    first = next(i for i in range(20) if full[4 + i : 6 + i] == stop)
    seen = []
    out = model.generate(prompt, 20, stop_sequences=[stop], streamer=lambda t: seen.append(t.clone()))
    assert int(out.num_new_tokens[0]) == first + 1
    assert out.new_tokens[0, : first + 1].tolist() == row0[: first + 1]
    assert torch.all(out.new_tokens[0, first + 1 :] == 0) and not out.sequence_mask[0, 5 + first + 1 :].any()
    assert torch.equal(torch.stack(seen, 1), out.new_tokens[:, : len(seen)])  # streamed as generated
    full1 = prompt[1].tolist() + free.new_tokens[1].tolist()
    if all(full1[4 + i : 6 + i] != stop for i in range(20)):  # row 1 goes on to the end
        assert int(out.num_new_tokens[1]) == 20 and torch.equal(out.new_tokens[1], free.new_tokens[1])
    eos = row0[3]
    out = model.generate(prompt[:1], 20, eos_token_id=eos)
    assert int(out.num_new_tokens[0]) == row0.index(eos) + 1
    assert out.sequence_mask[0, 5:].sum() == row0.index(eos) + 1
    # strings are UTF-8 bytes (+ 6) for the byte vocabulary
    assert _encode_stops(["ab", [7, 8]], 262) == [[103, 104], [7, 8]]
    with pytest.raises(ValueError, match="byte vocabulary"):
        _encode_stops(["ab"], 1000)


# -- sampling filters on a hand-made distribution ---------------------------------------------------

PROBS = torch.tensor([0.05, 0.5, 0.1, 0.2, 0.15])  # sorted: 1 (0.5), 3 (0.2), 4 (0.15), 2 (0.1), 0 (0.05)


def _kept(logits):
    return set(torch.isfinite(logits).nonzero()[:, -1].tolist())


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = PROBS.log()[None]
    assert _kept(top_k_filter(logits, 1)) == {1}
    assert _kept(top_k_filter(logits, 3)) == {1, 3, 4}
    assert _kept(top_k_filter(logits, 99)) == {0, 1, 2, 3, 4}
    assert _kept(top_k_filter(torch.tensor([[1.0, 2.0, 2.0, 0.0]]), 2)) == {1, 2}  # ties
    assert _kept(top_p_filter(logits, 0.5)) == {1}  # 0.5 alone reaches 0.5
    assert _kept(top_p_filter(logits, 0.51)) == {1, 3}
    assert _kept(top_p_filter(logits, 0.7)) == {1, 3}
    assert _kept(top_p_filter(logits, 0.71)) == {1, 3, 4}
    assert _kept(top_p_filter(logits, 0.01)) == {1}  # the most probable token always stays
    assert _kept(top_p_filter(logits, 1.0)) == {0, 1, 2, 3, 4}
    torch.testing.assert_close(process_logits(logits, temperature=2.0), logits / 2)
    # the kept tokens keep their logits; the batch rows are filtered independently
    two = torch.stack([PROBS.log(), PROBS.roll(1).log()])  # row 1: 2 (0.5), 4 (0.2), 0 (0.15), ...
    out = top_p_filter(two, 0.6)
    assert _kept(out[:1]) == {1, 3} and _kept(out[1:]) == {2, 4}
    torch.testing.assert_close(out[0, [1, 3]], two[0, [1, 3]])


def test_sampling_frequencies_follow_the_filtered_distribution():
    logits = PROBS.log()[None].expand(20000, -1)
    g = torch.Generator().manual_seed(0)
    draws = sample_next_token(logits, True, 1.0, 3, None, g)
    freq = torch.bincount(draws, minlength=5).float() / len(draws)
    expected = torch.tensor([0, 0.5, 0, 0.2, 0.15]) / 0.85
    torch.testing.assert_close(freq, expected, atol=0.015, rtol=0)
    draws = sample_next_token(logits, True, 1.0, None, 0.75, g)  # nucleus {1, 3, 4}
    freq = torch.bincount(draws, minlength=5).float() / len(draws)
    torch.testing.assert_close(freq, expected, atol=0.015, rtol=0)
    hot = sample_next_token(logits, True, 100.0, None, None, g)  # near uniform
    assert torch.bincount(hot, minlength=5).min() > 3000
    assert torch.all(sample_next_token(logits, False, 0.1, 1, 0.1, g) == 1)  # greedy ignores them


# -- errors ------------------------------------------------------------------------------------------


ONES = torch.ones(1, 4, dtype=torch.bool)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda m: m.generate(torch.rand(1, 4)), TypeError, "input_ids must be an integer tensor"),
        (lambda m: m.generate(torch.tensor([6, 7])), ValueError, r"input_ids must have shape \(B, L\)"),
        (lambda m: m.generate(torch.zeros(1, 2, 3, dtype=torch.long)), ValueError, r"shape \(B, L\)"),
        (lambda m: m.generate(torch.zeros(1, 0, dtype=torch.long)), ValueError, "must not be empty"),
        (
            lambda m: m.generate(torch.tensor([[6, 300]])),
            ValueError,
            r"must be in \[0, 262\), got values in \[6, 300\]",
        ),
        (lambda m: m.generate(torch.tensor([[-1, 7]])), ValueError, r"must be in \[0, 262\)"),
        (lambda m: m.generate(ids(2, 4), input_mask=torch.ones(2, 3, dtype=torch.bool)), ValueError, r"\(2, 4\)"),
        (lambda m: m.generate(ids(2, 4), input_mask=torch.ones(2, 4)), TypeError, "must be a bool tensor"),
        (
            lambda m: m.generate(ids(2, 4), input_mask=torch.tensor([[True] * 4, [False] * 4])),
            ValueError,
            "at least one real token",
        ),
        (lambda m: m.generate(ids(1, 4), input_mask=ONES, attention_mask=ONES), ValueError, "not both"),
        (lambda m: m.generate(ids(1, 4), -1), ValueError, "max_new_tokens must be a non-negative integer"),
        (
            lambda m: m.generate(ids(1, 4), do_sample=True, temperature=0.0),
            ValueError,
            "temperature must be a positive number",
        ),
        (lambda m: m.generate(ids(1, 4), top_k=0), ValueError, "top_k must be None or a positive integer"),
        (lambda m: m.generate(ids(1, 4), top_p=1.5), ValueError, r"top_p must be None or in \(0, 1\]"),
        (lambda m: m.generate(ids(1, 4), stop_sequences=[[]]), ValueError, "must not be empty"),
        (lambda m: m.generate(ids(1, 4), stop_sequences=[[999]]), ValueError, "outside"),
        (lambda m: m(torch.rand(1, 4)), TypeError, "input_ids must be an integer tensor"),
        (lambda m: m(ids(1, 4), torch.ones(1, 5, dtype=torch.bool)), ValueError, "input_mask"),
        (lambda m: m.loss(ids(1, 1)), ValueError, "at least 2 tokens"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, error, message):
    model = tiny()
    with pytest.raises(error, match=message):
        call(model)


def test_config_errors_name_the_field():
    from perceiver_io import ConfigError

    with pytest.raises(ConfigError, match=r"num_latents \(64\) must be <= max_context_length \(32\)"):
        perceiver_io.create_model("test-perceiver-ar", num_latents=64)
    with pytest.raises(ConfigError, match="rotary_max_wavelength"):
        perceiver_io.create_model("test-perceiver-ar", rotary_max_wavelength=8.0)
    with pytest.raises(ConfigError, match="absolute_positions must be one of"):
        perceiver_io.create_model("test-perceiver-ar", absolute_positions="learned")


# -- loss, save/load ---------------------------------------------------------------------------------


def test_loss_is_next_token_cross_entropy_on_the_latents_with_z_loss():
    model = tiny()
    x = ids(2, 21)
    logits = model(x[:, :-1]).logits  # (2, 8, V): after each of the last 8 of 20 inputs
    targets = x[:, 1:][:, -8:]
    ce = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    torch.testing.assert_close(model.loss(x, z_loss=0.0), ce)
    z = 1e-2 * logits.logsumexp(-1).square().mean()
    torch.testing.assert_close(model.loss(x, z_loss=1e-2), ce + z)
    torch.testing.assert_close(model.loss(x), ce + model.config.z_loss * logits.logsumexp(-1).square().mean())
    assert model.loss(x, reduction="none").shape == (2, 8)
    # padded positions are never scored: left padding of row 1, a padded last target in row 0
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[1, :15] = False  # row 1: 6 real inputs, 5 scored targets
    mask[0, -1] = False
    logits = model(x[:, :-1], mask[:, :-1]).logits
    scored = (mask[:, 1:] & mask[:, :-1])[:, -8:]
    assert scored.sum(1).tolist() == [7, 5]
    per = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(2, 8)
    torch.testing.assert_close(model.loss(x, mask, z_loss=0.0), per[scored].mean())
    torch.testing.assert_close(causal_lm_loss(logits, targets, scored, reduction="sum"), per[scored].sum())


def test_save_load_round_trip_generates_the_same(tmp_path):
    model = tiny(absolute_positions="sinusoidal", position_origin="start")
    model.save_pretrained(tmp_path)
    loaded = perceiver_io.from_pretrained(tmp_path)
    assert isinstance(loaded, PerceiverAR) and loaded.config == model.config
    prompt = ids(2, 7)
    assert torch.equal(model.generate(prompt, 30).new_tokens, loaded.generate(prompt, 30).new_tokens)
    assert torch.equal(PerceiverAR.from_pretrained(tmp_path)(prompt).logits, model(prompt).logits)


def test_generate_restores_training_mode_and_needs_no_grad():
    model = tiny().train()
    out = model.generate(ids(1, 4), 3)
    assert model.training and not out.new_tokens.requires_grad and out.new_tokens.shape == (1, 3)
    assert model.generate(ids(1, 4), 0).new_tokens.shape == (1, 0)


# -- training task and command line ------------------------------------------------------------------

TINY_TASK = {
    "model.num_input_channels": 32,
    "model.num_latent_channels": 32,
    "model.num_self_attention_layers": 1,
    "model.num_cross_attention_heads": 2,
    "model.num_self_attention_heads": 2,
    "train.batch_size": 4,
    "train.max_steps": 2,
    "train.warmup_steps": 1,
    "train.eval_batches": 1,
    "train.progress": False,
    "train.tensorboard": False,
    "train.plot": False,
}


def test_copy_task_examples_loss_and_metrics():
    from perceiver_io.tasks import build_config, get_task_class

    cfg = build_config("clm", overrides={"data.task": "copy", "data.copy_eval_examples": 8, **TINY_TASK})
    assert cfg.data.seq_len == 32 and cfg.model.max_context_length == 32 and cfg.model.num_latents == 16
    task = get_task_class("clm")(cfg, log=lambda m: None)
    task.setup()
    batch = task.collate([task.train_data[i] for i in range(3)], [1, 2, 3])
    x = batch["input_ids"]
    assert x.shape == (3, 33) and torch.all(x[:, 0] == 1)
    assert torch.equal(x[:, 1:17], x[:, 17:].flip(1))  # random bytes, then their reverse
    assert torch.equal(task.collate([None], [1])["input_ids"][0], x[0])
    assert task.count(batch) == 3 * 16
    model = task.build_model()
    loss = task.loss(model, batch)
    torch.testing.assert_close(loss / task.count(batch), model.loss(x))
    m = task.evaluate(model.eval(), "valid")
    assert set(m) == {"loss", "accuracy", "sequence_accuracy", "generate_accuracy"} and m["accuracy"] < 0.2
    with pytest.raises(perceiver_io.ConfigError, match="must be >= seq_len / 2"):
        build_config("clm", overrides={"data.task": "copy", "model.num_latents": 8})


def test_train_clm_on_text_then_predict_generate(tmp_path):
    from test_training import write_corpus

    corpus = write_corpus(tmp_path / "c.txt")
    run = tmp_path / "run"
    args = {
        "data.corpus": str(corpus),
        "data.fallback_corpus": "null",
        "data.seq_len": 64,
        "data.eval_windows": 4,
        "data.sample_tokens": 8,
        "data.num_samples": 1,
        "model.num_latents": 16,
        "train.run_dir": str(run),
        **TINY_TASK,
    }
    res = CliRunner().invoke(app, ["train", "clm", *[f"{k}={v}" for k, v in args.items()]])
    assert res.exit_code == 0, res.output
    assert "bits/byte" in res.output and "baseline: unigram bytes" in res.output and "sampled:" in res.output
    res = CliRunner().invoke(
        app, ["predict", "generate", "--model", str(run / "model"), "Hello", "--max-new-tokens", "5"]
    )
    assert res.exit_code == 0, res.output
    assert res.output.startswith("Hello")
    res = CliRunner().invoke(
        app, ["predict", "generate", "--model", str(run / "model"), "Hi", "--sample", "--top-p", "0.9", "--no-cache"]
    )
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["predict", "generate", "--model", str(run / "model"), "", "--bos"])
    assert res.exit_code == 0, res.output  # [BOS] alone is a prompt (the copy task's sequences start with it)
    res = CliRunner().invoke(app, ["predict", "generate", "--model", str(run / "model"), ""])
    assert res.exit_code == 1 and "must not be empty" in res.output
    res = CliRunner().invoke(app, ["predict", "generate", "--model", str(tmp_path / "nope"), "Hi"])
    assert res.exit_code == 1 and "no such directory" in res.output
