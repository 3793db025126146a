"""Training configuration: one dataclass holds every default; a YAML file and ``--key value`` overrides change it."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from app.text import DEFAULT_PASSAGE_PREFIX, DEFAULT_QUERY_PREFIX

HARD_NEGATIVE_LANGUAGES = ("passage", "query", "any", "both")
PRECISIONS = ("auto", "fp32", "bf16")
NINE_TRAINING_LANGUAGES = ["ar", "de", "en", "es", "hi", "ru", "th", "tr", "zh"]


@dataclass
class TrainConfig:
    # Every setting has its meaning as the comment on its line: `train.py --help` prints them (settings_help).
    run_name: str = "hybrid"  # name of the run: its model folder and its runs folder
    model: str = "models/multilingual-e5-small"  # hub id or folder to start from
    output_dir: str = "models"  # the final model goes to <output_dir>/<run_name>
    runs_dir: str = "runs"  # checkpoints, metrics, config and plots go to <runs_dir>/<run_name>
    # --- data ---
    data_format: str = "lareqa"  # lareqa (SQuAD-style files per language) | jsonl (parallel records)
    train_path: str = "data/xquad-r"  # folder of <lang>.json (lareqa) or a .jsonl file
    dev_path: str = ""  # empty: same as train_path (LAReQA with a split file)
    split_file: str = "data/splits/xquad-r-articles.json"  # JSON of article titles per split (lareqa)
    train_split: str = "train"  # split of split_file to train on
    dev_split: str = "dev"  # split of split_file for the dev loss and early stopping
    languages: list[str] = field(default_factory=lambda: list(NINE_TRAINING_LANGUAGES))  # languages to train on
    # --- method ---
    strategy: str = "hybrid"  # mono (X-X) | cross (X-Y) | hybrid
    alpha: float = 0.5  # probability of a mono batch in hybrid
    temperature: float = 0.05  # InfoNCE temperature
    hard_negatives: bool = False  # add same-paragraph hard negatives (other sentences) when the data has them
    hard_negatives_per_pair: int = 1  # how many hard negatives per pair, at most
    # "query": in X-Y batches a wrong passage in the query's own language, exactly what a language-biased model
    # ranks too high. "both": half in the query's language (the odd one too), half in the passage's
    # (measured: experiments/recipes/12-hn-both.yaml).
    hard_negative_language: str = "passage"  # the hard negatives' language: passage | query | any (of the group) | both
    # Each pair's answer also in this many other languages of its group, as further positives of its query (each
    # scored against the query's negatives alone: training/loss.py); the dev loss stays the one-positive loss
    # (measured: experiments/recipes/08-translation1.yaml).
    translation_positives: int = 0  # extra positives per pair: translations of its positive; 0 = none
    # Also the passage-to-query direction (each positive picks its query among the batch's queries), the loss being
    # the mean of both (measured: experiments/recipes/11-symmetric.yaml).
    symmetric_loss: bool = False  # InfoNCE in both directions; the dev loss stays query-to-passage
    # Two pairs with one positive text in a batch (two questions on one paragraph, common in plain pairs): without
    # this, each one's positive is the other's negative. The shipped adapter's recipe predates it (off there).
    mask_duplicate_positives: bool = True  # a copy of a query's positive text is not one of its negatives
    batch_size: int = 32  # pairs per batch (in-batch negatives)
    grad_cache_chunk: int = 0  # 0: plain batching; >0: GradCache with sub-batches of this size
    # Pieces of 8 on a CPU (padding is what costs there), the whole batch on a GPU (5x faster there than 8).
    pad_bucket: int = 0  # forward in length-sorted pieces of this size; 0 = per device
    max_query_length: int = 64  # tokens per query, at most
    max_passage_length: int = 128  # tokens per passage, at most
    query_prefix: str = DEFAULT_QUERY_PREFIX  # put before every query (e5 models expect it)
    passage_prefix: str = DEFAULT_PASSAGE_PREFIX  # put before every passage
    # --- optimisation ---
    # The 250k x 384 table is 81 % of the weights; updating it densely costs more than the whole forward/backward
    # on 2 cores, and languages unseen in training (el, vi) keep their aligned embeddings.
    freeze_embeddings: bool = True  # keep the word embeddings frozen
    # With LoRA the whole base stays frozen and only rank-r updates of the targeted projections train; the adapter
    # is saved in peft's layout and merged into the base at export. "word_embeddings" among the targets adds a LoRA
    # on the token table (measured: experiments/recipes/14-embeddings.yaml).
    lora_rank: int = 0  # LoRA rank (peft); 0 = full fine-tuning
    lora_alpha: float = 32.0  # LoRA scaling numerator (updates scaled by alpha / rank)
    lora_dropout: float = 0.0  # dropout on the LoRA branch
    lora_targets: list[str] = field(
        default_factory=lambda: ["query", "key", "value", "output.dense", "intermediate.dense"]
    )  # modules that get LoRA: every attention and feed-forward projection of every layer (training/lora.py)
    adapter_dir: str = ""  # LoRA runs: where the best adapter is written too (always: <final model>/adapter)
    # A local rebuild of a hub model trains on a path that means nothing to peft users elsewhere.
    adapter_base_name: str = ""  # LoRA runs: the base named in adapter_config.json (e.g. a hub id); "" = model
    lr: float = 3e-5  # AdamW learning rate (peak, after warm-up)
    weight_decay: float = 0.01  # AdamW weight decay (not on biases and LayerNorms)
    warmup_ratio: float = 0.1  # share of max_steps with a linear warm-up
    max_grad_norm: float = 1.0  # gradient clipping; 0 = none
    max_steps: int = 200  # optimisation steps, at most
    seed: int = 42  # seeds batches, negatives, dropout and initialisation
    # The loss is always taken in fp32.
    precision: str = "auto"  # auto (bf16 autocast on a GPU that supports it, else fp32) | fp32 | bf16
    # Costs some GPU speed; CPU runs are deterministic without it.
    deterministic: bool = False  # deterministic kernels so that a resumed CUDA run repeats an uninterrupted one
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    # --- evaluation, early stopping, checkpoints ---
    eval_every: int = 50  # steps between dev-loss evaluations
    eval_batches: int = 8  # fixed hybrid dev batches per evaluation
    patience: int = 4  # stop after this many evaluations without a better dev loss; 0 = never
    checkpoint_every: int = 50  # steps between checkpoints (resumable after a crash)
    resume: bool = True  # continue from <runs_dir>/<run_name>/checkpoint when it exists
    export_onnx: bool = True  # export the result to ONNX (fp32 + gated int8) with the service's parity gates
    # Your own pairs (jsonl): this share of their ids is held out of training and dev, and the run ends with
    # `polyglot-search eval`'s table on them, the starting model against the result (needs export_onnx).
    held_out_fraction: float = 0.0  # share of ids held out for the final evaluation; 0 = none
    # Your plain pairs added to any training data (e.g. to the XQuAD-R articles): JSONL files, their records in
    # `languages` kept; they join those languages' monolingual batches (and cross ones where ids link translations).
    extra_train_paths: list[str] = field(default_factory=list)  # JSONL files of pairs added to the training data
    # Plain pairs without negatives: mine them with the starting model before training (training/mining.py).
    mine_negatives: bool = False  # mine hard negatives for the pairs that have none with `model` (needs hard_negatives)
    mine_skip_top: int = 3  # mined negatives: the best candidates skipped as likely unjudged answers
    mine_margin: float = 0.05  # mined negatives score at most the positive's score minus this

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.run_name

    @property
    def final_model_dir(self) -> Path:
        return Path(self.output_dir) / self.run_name

    @property
    def uses_lora(self) -> bool:
        return self.lora_rank > 0

    def check(self) -> TrainConfig:
        """Settings that are valid one by one but not together."""
        if self.lora_rank < 0:
            raise ConfigError(f"lora_rank must be 0 (full fine-tuning) or positive, got {self.lora_rank}")
        if self.uses_lora and not self.freeze_embeddings:
            raise ConfigError("LoRA keeps the whole base frozen, word embeddings included: set freeze_embeddings true")
        if not 0 <= self.held_out_fraction < 1:
            raise ConfigError(f"held_out_fraction must be in [0, 1), got {self.held_out_fraction}")
        if self.held_out_fraction and not self.export_onnx:
            raise ConfigError("held_out_fraction evaluates the exported model: set export_onnx true")
        if self.mine_negatives and not self.hard_negatives:
            raise ConfigError("mine_negatives mines them for training: set hard_negatives true")
        if self.hard_negatives_per_pair < 1:
            raise ConfigError(f"hard_negatives_per_pair must be at least 1, got {self.hard_negatives_per_pair}")
        if self.translation_positives < 0:
            raise ConfigError(f"translation_positives must be 0 or more, got {self.translation_positives}")
        if self.hard_negative_language not in HARD_NEGATIVE_LANGUAGES:
            raise ConfigError(
                f"hard_negative_language must be one of {', '.join(HARD_NEGATIVE_LANGUAGES)}, "
                f"got {self.hard_negative_language!r}"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.pad_bucket < 0:
            raise ConfigError(f"pad_bucket must be 0 (per device) or positive, got {self.pad_bucket}")
        for key in ("adapter_dir", "adapter_base_name"):
            if getattr(self, key) and not self.uses_lora:
                raise ConfigError(f"{key} is only for LoRA runs (lora_rank > 0)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ConfigError(ValueError):
    pass


MAY_BE_EMPTY = {"extra_train_paths"}  # list settings where an empty list means "none"


def _coerce(name: str, raw: Any, hint: Any) -> Any:
    if hint is str:
        return raw if isinstance(raw, str) else ("" if raw is None else str(raw))
    value = yaml.safe_load(raw) if isinstance(raw, str) else raw
    if hint == list[str]:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if value is None and name in MAY_BE_EMPTY:
            value = []
        if not isinstance(value, list) or not (value or name in MAY_BE_EMPTY):
            raise ConfigError(f"{name}: expected a non-empty list, got {raw!r}")
        return [str(v) for v in value]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true/false, got {raw!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {raw!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name}: expected a number, got {raw!r}")
        return float(value)
    raise ConfigError(f"{name}: unsupported setting type {hint}")


def build_config(config_file: Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """Defaults < config file < overrides; unknown keys and wrong types are errors, not ignored."""
    hints = get_type_hints(TrainConfig)
    values: dict[str, Any] = {}
    if config_file is not None:
        loaded = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config_file}: expected a mapping of settings")
        values.update(loaded)
    values.update(overrides)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown}; known: {sorted(hints)}")
    return TrainConfig(**{k: _coerce(k, v, hints[k]) for k, v in values.items()}).check()


def parse_overrides(args: list[str]) -> dict[str, str]:
    """``--batch-size 64 --languages en,de`` or ``--batch_size=64`` -> {"batch_size": "64", ...}."""
    overrides: dict[str, str] = {}
    index = 0
    while index < len(args):
        token = args[index]
        if not token.startswith("--"):
            raise ConfigError(f"unexpected argument {token!r}; overrides look like --key value")
        key, _, inline = token[2:].partition("=")
        key = key.replace("-", "_")
        if inline:
            overrides[key] = inline
        else:
            if index + 1 >= len(args):
                raise ConfigError(f"--{key} needs a value")
            index += 1
            overrides[key] = args[index]
        index += 1
    return overrides


def save_config(config: TrainConfig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8")


# Settings added after checkpoints existed: left out of the digest at these values (which is how those checkpoints
# were trained), so that a run interrupted before the setting existed still resumes.
LATER_SETTINGS = {
    "translation_positives": 0,
    "symmetric_loss": False,
    "held_out_fraction": 0.0,
    "mine_negatives": False,
    "mine_skip_top": 3,
    "mine_margin": 0.05,
    "extra_train_paths": [],
    "mask_duplicate_positives": False,
}


def config_digest(config: TrainConfig) -> str:
    """Settings that must match for a checkpoint to be resumed (everything but bookkeeping)."""
    bookkeeping = ("resume", "export_onnx", "threads", "adapter_dir", "adapter_base_name")
    keep = {
        k: v
        for k, v in config.to_dict().items()
        if k not in bookkeeping and not (k in LATER_SETTINGS and v == LATER_SETTINGS[k])
    }
    return json.dumps(keep, sort_keys=True)


def settings_help() -> str:
    """Every setting of ``TrainConfig`` with its type, default and meaning, read from the class's own source: the
    comment on the line where a field ends is its meaning; ``# --- title ---`` lines are section titles."""
    import ast
    import inspect

    source = inspect.getsource(TrainConfig)
    lines = source.splitlines()
    defaults = TrainConfig().to_dict()
    hints = get_type_hints(TrainConfig)
    out = ["settings (keys of the --config YAML file; any of them on the command line as --key value):"]
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        name = node.target.id
        row = node.lineno - 2
        while row >= 0 and lines[row].strip().startswith("#"):
            title = lines[row].strip()
            if title.startswith("# ---"):
                out.append(f"  {title.strip('# -')}:")
                break
            row -= 1
        end = lines[(node.end_lineno or node.lineno) - 1]
        meaning = end.split("  # ", 1)[1].strip() if "  # " in end else ""
        hint = hints[name].__name__ if isinstance(hints[name], type) else str(hints[name])
        value = defaults[name]
        default = ",".join(value) if isinstance(value, list) else json.dumps(value)
        out.append(f"    --{name.replace('_', '-'):<25} {hint:<9} {meaning} (default: {default})")
    return "\n".join(out)
