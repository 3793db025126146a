from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from tests.conftest import free_port, running_server
from tests.tiny import ROOT
from training.config import ConfigError, TrainConfig, build_config
from training.data import read_parallel_jsonl
from training.model import load_encoder
from training.samplers import Batch, Pair
from training.train import init_distributed
from training.trainer import Trainer, autocast_dtype, piece_size


def tiny_config(tmp_path: Path, tiny_hf_model: Path, parallel_jsonl: Path, **changes: object) -> TrainConfig:
    values = {
        "run_name": "tiny-run",
        "model": str(tiny_hf_model),
        "output_dir": str(tmp_path / "models"),
        "runs_dir": str(tmp_path / "runs"),
        "data_format": "jsonl",
        "train_path": str(parallel_jsonl),
        "split_file": "",
        "languages": ["en", "de", "es", "zh"],
        "batch_size": 8,
        "max_steps": 6,
        "eval_every": 3,
        "checkpoint_every": 2,
        "lr": 1e-3,
        "max_query_length": 32,
        "max_passage_length": 48,
        "export_onnx": False,
        "patience": 0,
    }
    values.update(changes)
    return build_config(None, values)


def make_trainer(config: TrainConfig, parallel_jsonl: Path, on_step=None) -> Trainer:  # type: ignore[no-untyped-def]
    torch.manual_seed(config.seed)
    data = read_parallel_jsonl(parallel_jsonl)
    train = type(data)({i: g for i, g in data.by_id.items() if int(i[1:]) < 30})
    dev = type(data)({i: g for i, g in data.by_id.items() if int(i[1:]) >= 30})
    return Trainer(config, load_encoder(config.model, max_length=48), train, dev, on_step)


def test_grad_cache_gives_the_full_batch_gradient(tmp_path: Path, tiny_hf_model: Path, parallel_jsonl: Path) -> None:
    grads = {}
    for chunk in (0, 3):
        config = tiny_config(tmp_path, tiny_hf_model, parallel_jsonl, grad_cache_chunk=chunk, hard_negatives=True)
        trainer = make_trainer(config, parallel_jsonl)
        trainer.model.eval()  # no dropout: both paths must then give the same gradient
        collated = trainer.collator.collate(trainer.sampler.batch(0), trainer.train_data, 0)
        assert collated.passages["input_ids"].shape[0] == 16  # 8 positives + 8 hard negatives
        trainer.backward(collated)
        grads[chunk] = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
    torch.testing.assert_close(grads[3], grads[0], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("language", ["passage", "query", "any"])
def test_hard_negatives_come_in_the_configured_language(
    tmp_path: Path, tiny_hf_model: Path, parallel_jsonl: Path, language: str
) -> None:
    config = tiny_config(
        tmp_path, tiny_hf_model, parallel_jsonl, strategy="cross", hard_negatives=True, hard_negative_language=language
    )
    trainer = make_trainer(config, parallel_jsonl)
    data = trainer.train_data
    batch = trainer.sampler.batch(0)
    negatives = trainer.collator.hard_negatives(batch, data, 0)
    assert len(negatives) == len(batch.pairs)  # one per pair: the data has one each
    assert all(p.query_lang != p.passage_lang for p in batch.pairs)
    for pair, negative in zip(batch.pairs, negatives, strict=True):
        language_of = {lang: ex.negatives[0] for lang, ex in data.by_id[pair.id].items()}
        wanted = {"passage": pair.passage_lang, "query": pair.query_lang}.get(language)
        assert negative == language_of[wanted] if wanted else negative in language_of.values()
    if language == "any":  # drawn at random, so some land outside both the query's and the passage's language
        assert any(
            n not in (data.by_id[p.id][p.query_lang].negatives + data.by_id[p.id][p.passage_lang].negatives)
            for p, n in zip(batch.pairs, negatives, strict=True)
        )


def test_both_languages_split_the_hard_negatives_between_the_query_and_the_passage(
    tmp_path: Path, tiny_hf_model: Path, parallel_jsonl: Path
) -> None:
    for strategy in ("cross", "mono"):
        config = tiny_config(
            tmp_path,
            tiny_hf_model,
            parallel_jsonl,
            strategy=strategy,
            hard_negatives=True,
            hard_negatives_per_pair=2,
            hard_negative_language="both",
        )
        trainer = make_trainer(config, parallel_jsonl)
        data, batch = trainer.train_data, trainer.sampler.batch(0)
        negatives = trainer.collator.hard_negatives(batch, data, 0)
        if strategy == "cross":  # the data has one negative per language: the query's, then the passage's
            wanted = [
                data.by_id[p.id][lang].negatives[0] for p in batch.pairs for lang in (p.query_lang, p.passage_lang)
            ]
        else:  # one language per pair, and it has a single negative to give
            wanted = [data.by_id[p.id][p.query_lang].negatives[0] for p in batch.pairs]
        assert negatives == wanted


def test_hard_negatives_per_pair_takes_as_many_as_the_data_has(
    tmp_path: Path, tiny_hf_model: Path, parallel_jsonl: Path
) -> None:
    config = tiny_config(tmp_path, tiny_hf_model, parallel_jsonl, hard_negatives=True, hard_negatives_per_pair=3)
    trainer = make_trainer(config, parallel_jsonl)
    batch = trainer.sampler.batch(0)
    # one each in the data
    assert len(trainer.collator.hard_negatives(batch, trainer.train_data, 0)) == len(batch.pairs)
    with pytest.raises(ValueError, match="hard_negative_language"):
        tiny_config(tmp_path, tiny_hf_model, parallel_jsonl, hard_negative_language="french")
    with pytest.raises(ValueError, match="hard_negatives_per_pair"):
        tiny_config(tmp_path, tiny_hf_model, parallel_jsonl, hard_negatives_per_pair=0)


def test_translation_positives_are_other_languages_of_the_same_answer(
    tmp_path: Path, tiny_hf_model: Path, parallel_jsonl: Path
) -> None:
    config = tiny_config(tmp_path, tiny_hf_model, parallel_jsonl, translation_positives=2, hard_negatives=True)
    trainer = make_trainer(config, parallel_jsonl)
    data, batch = trainer.train_data, trainer.sampler.batch(0)
    extra = trainer.collator.translation_positives(batch, data, 0)
    n = len(batch.pairs)
    assert len(extra) == 2 * n
    for index, pair in enumerate(batch.pairs):
        versions = {ex.positive: lang for lang, ex in data.by_id[pair.id].items()}
        first, second = versions[extra[index]], versions[extra[n + index]]  # block 0 and block 1 of this pair
        assert pair.passage_lang not in (first, second) and first != second
    # a pure function of the step: resumes repeat it
    assert extra == trainer.collator.translation_positives(batch, data, 0)
    collated = trainer.collator.collate(batch, data, 0)
    assert (collated.n_positives, collated.n_translation_positives) == (n, 2 * n)
    assert collated.passages["input_ids"].shape[0] == 4 * n  # positives, two translation blocks, hard negatives
    assert trainer.collator.collate(batch, data, 0, translations=False).n_translation_positives == 0
    # the dev loss is the one-positive loss: the same number as a run without translation positives
    plain = make_trainer(tiny_config(tmp_path, tiny_hf_model, parallel_jsonl, hard_negatives=True), parallel_jsonl)
    assert math.isclose(trainer.dev_loss(), plain.dev_loss(), rel_tol=1e-6)  # type: ignore[arg-type]
    grads = {}
    for chunk in (0, 3):  # GradCache sees the translation blocks too
        trainer = make_trainer(dataclasses.replace(config, grad_cache_chunk=chunk), parallel_jsonl)
        trainer.model.eval()
        trainer.backward(trainer.collator.collate(batch, data, 0))
        grads[chunk] = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
    torch.testing.assert_close(grads[3], grads[0], rtol=1e-3, atol=1e-5)
    with pytest.raises(ValueError, match="translation_positives"):
        tiny_config(tmp_path, tiny_hf_model, parallel_jsonl, translation_positives=-1)
    with pytest.raises(ConfigError, match="at least 5 languages"):  # the tiny data has 4 per id
        make_trainer(dataclasses.replace(config, translation_positives=4), parallel_jsonl)


def test_symmetric_loss_trains_both_directions_and_stops_on_the_one_way_dev_loss(
    tmp_path: Path, tiny_hf_model: Path, parallel_jsonl: Path
) -> None:
    config = tiny_config(tmp_path, tiny_hf_model, parallel_jsonl, symmetric_loss=True, hard_negatives=True)
    plain_config = dataclasses.replace(config, symmetric_loss=False)
    trainer, plain = make_trainer(config, parallel_jsonl), make_trainer(plain_config, parallel_jsonl)
    assert math.isclose(trainer.dev_loss(), plain.dev_loss(), rel_tol=1e-6)  # type: ignore[arg-type]
    batch = trainer.sampler.batch(0)
    losses, grads = {}, {}
    for name, chunk_config in {
        "plain": plain_config,
        "full": config,
        "chunked": dataclasses.replace(config, grad_cache_chunk=3),
    }.items():
        trainer = make_trainer(chunk_config, parallel_jsonl)
        trainer.model.eval()
        losses[name] = trainer.backward(trainer.collator.collate(batch, trainer.train_data, 0))
        grads[name] = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
    assert not math.isclose(losses["full"], losses["plain"], rel_tol=1e-3)  # the training loss is another one
    torch.testing.assert_close(grads["chunked"], grads["full"], rtol=1e-3, atol=1e-5)  # GradCache gives it exactly


def test_checkpoints_from_before_a_setting_existed_still_resume() -> None:
    from training.config import LATER_SETTINGS, config_digest

    config = dataclasses.replace(TrainConfig(), mask_duplicate_positives=False)
    older = json.loads(config_digest(config))
    assert not set(LATER_SETTINGS) & set(older)  # a checkpoint made then had none of these keys
    # a later setting whose default is not how older runs trained: an older checkpoint resumes only with it set back
    assert json.loads(config_digest(TrainConfig()))["mask_duplicate_positives"] is True
    changed = json.loads(config_digest(dataclasses.replace(config, translation_positives=1)))
    assert changed["translation_positives"] == 1  # a run that uses one is told apart
    assert json.loads(config_digest(dataclasses.replace(config, symmetric_loss=True)))["symmetric_loss"] is True


def test_loss_falls_on_a_tiny_task(tmp_path: Path, tiny_hf_model: Path, parallel_jsonl: Path) -> None:
    """30 ids x 4 languages, 60 steps of batch 8: the random tiny encoder starts at chance (ln 8 = 2.08)."""
    config = tiny_config(
        tmp_path,
        tiny_hf_model,
        parallel_jsonl,
        max_steps=60,
        eval_every=30,
        checkpoint_every=60,
        lr=3e-3,
        freeze_embeddings=False,  # a random model's embeddings are what it most needs to learn
    )
    summary = make_trainer(config, parallel_jsonl).fit()
    records = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    dev = [r["dev_loss"] for r in records if "dev_loss" in r]
    assert len(losses) == 60 and len(dev) == 3  # step 0, 30, 60
    assert sum(losses[-10:]) < 0.9 * sum(losses[:10]), losses
    assert summary["best_dev_loss"] == min(dev)


@pytest.fixture
def deterministic_kernels() -> Iterator[None]:
    """``deterministic: true`` switches torch's process-wide setting; the other tests must not inherit it."""
    yield
    torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize(
    "changes", [{"grad_cache_chunk": 3}, {"lora_rank": 4, "lora_alpha": 8.0}], ids=["full-grad-cache", "lora"]
)
def test_resume_gives_the_same_weights(
    tmp_path: Path, tiny_hf_model: Path, parallel_jsonl: Path, changes: dict, deterministic_kernels: None
) -> None:
    """Crash after the step-4 checkpoint, resume: the final weights equal an uninterrupted run's, bit for bit.

    On a GPU this needs ``deterministic`` (and the CUDA RNG in the checkpoint, for dropout); on a CPU it holds
    either way.
    """
    changes = {**changes, "deterministic": True}
    straight = tiny_config(tmp_path / "a", tiny_hf_model, parallel_jsonl, hard_negatives=True, **changes)
    reference = make_trainer(straight, parallel_jsonl)
    reference.fit()

    class Crash(Exception):
        pass

    def crash_at_5(step: int, loss: float) -> None:
        if step == 5:
            raise Crash

    interrupted = tiny_config(tmp_path / "b", tiny_hf_model, parallel_jsonl, hard_negatives=True, **changes)
    with pytest.raises(Crash):
        make_trainer(interrupted, parallel_jsonl, crash_at_5).fit()
    saved = torch.load(interrupted.run_dir / "checkpoint" / "state.pt", weights_only=False)["model"]
    if "lora_rank" in changes:  # a LoRA checkpoint holds the adapter's weights only, not the frozen base
        assert saved and all("lora_" in name for name in saved)
    resumed = make_trainer(interrupted, parallel_jsonl)
    summary = resumed.fit()
    assert summary["steps_this_session"] == 2  # resumed at step 4
    for (name, a), (_, b) in zip(reference.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    steps = [json.loads(line)["step"] for line in (interrupted.run_dir / "metrics.jsonl").read_text().splitlines()]
    reference_steps = [
        json.loads(line)["step"] for line in (straight.run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == reference_steps  # the crashed step's record was dropped and redone


def test_two_process_ddp_run_agrees(tmp_path: Path, tiny_hf_model: Path, parallel_jsonl: Path) -> None:
    config = tiny_config(
        tmp_path, tiny_hf_model, parallel_jsonl, run_name="ddp", max_steps=4, eval_every=2, grad_cache_chunk=4
    )
    overrides = {key: ",".join(v) if isinstance(v, list) else str(v) for key, v in config.to_dict().items()}
    args = [a for key, value in overrides.items() for a in (f"--{key}", value)]
    torchrun = Path(sys.executable).with_name("torchrun")
    # two processes need two GPUs (one each); with fewer, both run on the CPU with gloo
    cpu_unless_two_gpus = {} if torch.cuda.device_count() >= 2 else {"CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [
            str(torchrun),
            "--nnodes",
            "1",
            "--nproc-per-node",
            "2",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(free_port()),
            "training/train.py",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", **cpu_unless_two_gpus},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_agree"] is True and summary["steps"] == 4
    assert (tmp_path / "models" / "ddp" / "model.safetensors").is_file()


def test_train_py_help_lists_every_setting_with_its_meaning_and_default() -> None:
    done = subprocess.run(
        [sys.executable, "training/train.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("    --")}
    fields = TrainConfig().to_dict()
    assert sorted(rows) == sorted(f"--{name.replace('_', '-')}" for name in fields)
    for name, value in fields.items():
        row = rows[f"--{name.replace('_', '-')}"]
        meaning = row.split(None, 2)[2].rsplit(" (default: ", 1)[0]
        assert len(meaning) > 5, f"{name} has no meaning in --help"
        assert row.endswith(f"(default: {','.join(value) if isinstance(value, list) else json.dumps(value)})")
    assert "  method:" in done.stdout and "--hard-negative-language" in done.stdout


def test_more_processes_than_gpus_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchrun --nproc-per-node 2 on a one-GPU machine: stop before any CUDA call, saying what to do."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: pytest.fail("a CUDA call was made"))
    for key, value in {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=r"2 processes on this node but it has 1 GPU\(s\).*--nproc-per-node 1"):
        init_distributed()


def test_precision_and_piece_size_follow_the_device(tmp_path: Path, tiny_hf_model: Path, parallel_jsonl: Path) -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp32", gpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16  # CPU autocast exists; "auto" never picks it
    config = tiny_config(tmp_path, tiny_hf_model, parallel_jsonl)
    assert config.pad_bucket == 0 and piece_size(config, cpu) == 8 and piece_size(config, gpu) >= 10**9
    assert piece_size(tiny_config(tmp_path, tiny_hf_model, parallel_jsonl, pad_bucket=16), gpu) == 16
    assert piece_size(tiny_config(tmp_path, tiny_hf_model, parallel_jsonl, grad_cache_chunk=4, pad_bucket=16), gpu) == 4
    with pytest.raises(ValueError, match="precision"):
        tiny_config(tmp_path, tiny_hf_model, parallel_jsonl, precision="fp16")


def test_bf16_autocast_trains_with_an_fp32_loss(tmp_path: Path, tiny_hf_model: Path, parallel_jsonl: Path) -> None:
    """bf16 on the CPU runs the same code path a GPU's auto precision takes: bf16 encoder, fp32 embeddings."""
    config = tiny_config(tmp_path, tiny_hf_model, parallel_jsonl, precision="bf16", max_steps=2, eval_every=2)
    trainer = make_trainer(config, parallel_jsonl)
    collated = trainer.collator.collate(trainer.sampler.batch(0), trainer.train_data, 0)
    assert trainer._forward(collated.queries).dtype == torch.float32
    summary = trainer.fit()
    assert summary["precision"] == "bf16" and math.isfinite(summary["best_dev_loss"])
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # autocast: weights stay fp32


@pytest.mark.e2e
def test_train_py_end_to_end_then_serve(
    tmp_path: Path, tiny_hf_model: Path, parallel_jsonl: Path, plain_pairs_jsonl: Path, tiny_corpus: Path
) -> None:
    """`python training/train.py` on the tiny model, a quarter of the pairs held out, plain pairs added whose hard
    negatives are mined with it: the run ends with the held-out table (the starting model against the result); the
    service then loads its output and answers /search."""
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(
        f"run_name: tiny-e2e\nmodel: {tiny_hf_model}\n"
        f"output_dir: {tmp_path / 'models'}\nruns_dir: {tmp_path / 'runs'}\n"
        f"data_format: jsonl\ntrain_path: {parallel_jsonl}\nlanguages: [en, de, es, zh]\n"
        "batch_size: 8\nmax_steps: 4\neval_every: 2\ncheckpoint_every: 2\nmax_passage_length: 48\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "training/train.py",
            "--config",
            str(config_file),
            "--strategy",
            "cross",
            "--lr",
            "1e-4",
            "--held_out_fraction",
            "0.25",
            "--hard_negatives",
            "true",
            "--extra_train_paths",
            str(plain_pairs_jsonl),
            "--mine_negatives",
            "true",
            "--mine_margin",  # the random tiny model scores everything alike: no margin, or nothing is kept
            "-0.5",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "tiny-e2e"
    saved = (run_dir / "config.yaml").read_text()
    assert "strategy: cross" in saved and "lr: 0.0001" in saved
    assert (run_dir / "loss.png").stat().st_size > 10_000
    model_dir = tmp_path / "models" / "tiny-e2e"
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["name"] == "tiny-e2e" and manifest["parity"]["fp32"]["max_abs_diff"] <= 1e-4
    assert "Held-out pairs (40 queries, 40 passages): start vs result" in result.stdout
    assert "20 ids, 20 examples added, languages ['de', 'en']" in result.stderr  # vi is not trained on
    # the parallel pairs keep their own negatives; the 20 plain ones get mined ones
    assert "mined hard negatives with" in result.stderr and "20 of 20 queries got negatives" in result.stderr
    held_out = json.loads((run_dir / "summary.json").read_text())["held_out"]
    assert held_out["ids"] == 10 and len(held_out["models"]) == 2
    assert set(held_out["differences"]["tiny-e2e"]) >= {"ndcg@10", "own_language@10", "rank_distance"}
    assert len(json.loads((run_dir / "held-out-eval" / "held_out_ids.json").read_text())) == 10
    assert (run_dir / "held-out-eval" / "per-language.png").is_file()

    index_dir = tmp_path / "indexes" / "tiny-e2e"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "index",
            "--corpus",
            str(tiny_corpus),
            "--model-dir",
            str(model_dir),
            "--out",
            str(index_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    with running_server({"SEARCH_MODEL_DIR": str(model_dir), "SEARCH_INDEX_DIR": str(index_dir)}) as base:
        answer = httpx.post(f"{base}/search", json={"query": "Super Bowl", "top_k": 3})
        assert answer.status_code == 200 and len(answer.json()["results"]) == 3
        assert answer.json()["model"] == "tiny-e2e"


def test_config_errors_are_clear(tmp_path: Path) -> None:
    from training.config import ConfigError, parse_overrides

    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['bach_size'\]"):
        build_config(None, {"bach_size": "3"})
    with pytest.raises(ConfigError, match="batch_size: expected an integer"):
        build_config(None, parse_overrides(["--batch-size", "many"]))
    config = build_config(None, parse_overrides(["--languages", "en,de", "--alpha=0.25", "--query-prefix", "q: "]))
    assert config.languages == ["en", "de"] and config.alpha == 0.25 and config.query_prefix == "q: "


@pytest.mark.parametrize("masked", [True, False])
def test_a_batch_marks_copies_of_a_positive(
    tmp_path: Path, tiny_hf_model: Path, parallel_jsonl: Path, masked: bool
) -> None:
    config = tiny_config(tmp_path, tiny_hf_model, parallel_jsonl, mask_duplicate_positives=masked)
    trainer = make_trainer(config, parallel_jsonl)
    # two questions (German, Spanish) answered by one English passage, and a third pair
    batch = Batch("cross", [Pair("p000", "de", "en"), Pair("p000", "es", "en"), Pair("p001", "en", "de")])
    collated = trainer.collator.collate(batch, trainer.train_data, 0)
    if masked:
        assert collated.same_as_positive is not None
        assert collated.same_as_positive.nonzero().tolist() == [[0, 1], [1, 0]]
    else:
        assert collated.same_as_positive is None
    queries, passages = (trainer._embed(inputs, trainer._forward) for inputs in (collated.queries, collated.passages))
    assert math.isfinite(float(trainer._loss(queries, passages, collated)))
