"""Which model encodes a corpus, and so its queries.

A corpus in several languages gets the language-agnostic default (``SEARCH_MODEL_DIR``): it ranks passages by what
they say, whatever their language. A corpus (almost) in one language gets the one-language model
(``SEARCH_ONE_LANGUAGE_MODEL_DIR``, the base model), which ranks best within one language (docs/RESULTS.md, "One
language or many"). ``SEARCH_MODEL_CHOICE`` overrides the choice. Whatever encoded a corpus encodes its queries: the
service loads the configured model whose fingerprint the store records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.manifest import ManifestError, ModelManifest, load_model_manifest
from app.settings import Settings

log = logging.getLogger(__name__)
ModelRole = Literal["multilingual", "one_language"]


@dataclass(frozen=True)
class ModelChoice:
    role: ModelRole
    model_dir: Path
    manifest: ModelManifest
    reason: str


def model_dirs(settings: Settings) -> dict[ModelRole, Path]:
    return {"multilingual": settings.model_dir, "one_language": settings.one_language_model_dir}


def dominant_language(languages: Mapping[str, int]) -> tuple[str, float]:
    """The most frequent language of a corpus and its share of the passages."""
    total = sum(languages.values())
    if not total:
        raise ValueError("an empty corpus has no languages")
    lang, count = max(languages.items(), key=lambda item: (item[1], item[0]))
    return lang, count / total


def choose_for_corpus(settings: Settings, languages: Mapping[str, int]) -> ModelChoice:
    """The model a corpus with these passage counts per language is indexed with."""
    dirs = model_dirs(settings)
    lang, share = dominant_language(languages)
    mix = f"{share:.1%} of the passages are '{lang}'"
    role: ModelRole
    if settings.model_choice != "auto":
        role, reason = settings.model_choice, f"SEARCH_MODEL_CHOICE={settings.model_choice} ({mix})"
    elif share >= settings.one_language_share:
        role, reason = "one_language", f"{mix} (>= {settings.one_language_share:.0%}): one language"
    else:
        role, reason = "multilingual", f"{mix} (< {settings.one_language_share:.0%}): several languages"
    try:
        manifest = load_model_manifest(dirs[role])
    except ManifestError as exc:
        if role != "one_language":
            raise
        raise ManifestError(
            f"the corpus is in one language ({mix}), but the one-language model {dirs[role]} is not built "
            f"(`make models` builds it: {exc}); or index it with the multilingual model: "
            "SEARCH_MODEL_CHOICE=multilingual"
        ) from exc
    return ModelChoice(role, dirs[role], manifest, reason)


def given_model(model_dir: Path) -> ModelChoice:
    """A model named on the command line: used as given."""
    return ModelChoice("multilingual", model_dir, load_model_manifest(model_dir), f"--model-dir {model_dir}")


def model_for_store(settings: Settings, encoded_with: Callable[[], str | None]) -> ModelChoice:
    """The configured model whose fingerprint the store records (``encoded_with`` reads it, only when there is a
    choice to make). A store that records none (a new Milvus collection) gets the multilingual model unless
    SEARCH_MODEL_CHOICE names another. When no configured model matches, the first candidate is returned and the
    store's own check says what to rebuild."""
    dirs = model_dirs(settings)
    roles: list[ModelRole] = (
        ["multilingual", "one_language"] if settings.model_choice == "auto" else [settings.model_choice]
    )
    manifests: dict[ModelRole, ModelManifest] = {}
    for role in roles:
        try:
            manifests[role] = load_model_manifest(dirs[role])
        except ManifestError:
            if role == roles[0]:
                raise
    if len(manifests) == 1:
        role = next(iter(manifests))
        return ModelChoice(
            role, dirs[role], manifests[role], f"the {role.replace('_', '-')} model is the only one configured"
        )
    fingerprint = encoded_with()
    for role, manifest in manifests.items():
        if manifest.fingerprint == fingerprint:
            return ModelChoice(role, dirs[role], manifest, f"the store holds embeddings of {manifest.name}")
    reason = "the store records no model yet" if fingerprint is None else "no configured model encoded the store"
    return ModelChoice(roles[0], dirs[roles[0]], manifests[roles[0]], reason)
