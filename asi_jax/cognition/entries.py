"""Cognition entries: what the researcher may draw on, one insight of one paper each.

The fields are ASI-Arch's. EXPERIMENTAL_TRIGGER_PATTERNS says in which experimental situation
the insight applies; the analyser's problem summary is matched against it.

    entries = load_jsonl(path)                 # our format: one JSON object per line
    entries = ingest_asi_arch(folder_or_file)  # ASI-Arch's: one JSON file per paper
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

# JSON key -> dataclass field. The upper-case keys are ASI-Arch's own.
FIELDS = {
    "title": "title",
    "source": "source",
    "DESIGN_INSIGHT": "design_insight",
    "EXPERIMENTAL_TRIGGER_PATTERNS": "trigger_patterns",
    "BACKGROUND": "background",
    "ALGORITHMIC_INNOVATION": "algorithmic_innovation",
    "IMPLEMENTATION_GUIDANCE": "implementation_guidance",
}
ASI_ARCH_FIELDS = tuple(k for k in FIELDS if k.isupper())


@dataclasses.dataclass(frozen=True)
class CognitionEntry:
    title: str
    source: str
    design_insight: str
    trigger_patterns: str
    background: str
    algorithmic_innovation: str
    implementation_guidance: str

    def to_json(self) -> dict[str, str]:
        return {key: getattr(self, name) for key, name in FIELDS.items()}

    def text(self) -> str:
        """Everything the entry says, for a prompt."""
        return "\n".join(f"{key}: {value}" for key, value in self.to_json().items())


class CognitionFormatError(ValueError):
    pass


def _text(value, where: str, key: str) -> str:
    # ASI-Arch's files sometimes hold a field as a list of sentences.
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = " ".join(value)
    if not isinstance(value, str) or not value.strip():
        raise CognitionFormatError(f"{where}: field {key!r} must be non-empty text")
    return value.strip()


def entry_from_json(item, where: str, *, title: str | None = None,
                    source: str | None = None) -> CognitionEntry:  # fmt: skip
    """Validates one entry; `title` and `source` fill in when the item lacks them."""
    if not isinstance(item, dict):
        raise CognitionFormatError(f"{where}: an entry must be a JSON object, got "
                                   f"{type(item).__name__}")  # fmt: skip
    item = {"title": title, "source": source, **{k: v for k, v in item.items() if v is not None}}
    missing = [k for k in FIELDS if item.get(k) is None]
    if missing:
        raise CognitionFormatError(f"{where}: missing fields {missing}")
    return CognitionEntry(**{name: _text(item[key], where, key) for key, name in FIELDS.items()})


def load_jsonl(path: str | Path) -> list[CognitionEntry]:
    path = Path(path)
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise CognitionFormatError(f"{where}: not valid JSON ({e.msg})") from None
        entries.append(entry_from_json(item, where))
    return entries


def save_jsonl(entries: Iterable[CognitionEntry], path: str | Path) -> None:
    lines = [json.dumps(e.to_json(), ensure_ascii=False) for e in entries]
    Path(path).write_text("\n".join(lines) + "\n")


def ingest_asi_arch(path: str | Path) -> list[CognitionEntry]:
    """Entries from ASI-Arch's cognition format: a file, or a folder of `*.json` files, each
    one paper holding a list of objects with the five upper-case fields. The title defaults
    to the file's name, the source to its path."""
    path = Path(path)
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise CognitionFormatError(f"{path}: no .json files to ingest")
    entries = []
    for file in files:
        try:
            items = json.loads(file.read_text())
        except json.JSONDecodeError as e:
            raise CognitionFormatError(
                f"{file}: not valid JSON ({e.msg}, line {e.lineno})"
            ) from None
        if isinstance(items, dict):
            items = [items]
        if not isinstance(items, list):
            raise CognitionFormatError(f"{file}: expected a list of entries")
        title = file.stem.replace("_", " ")
        for i, item in enumerate(items):
            entries.append(entry_from_json(item, f"{file}[{i}]", title=title, source=str(file)))
    return entries


def unique(entries: Sequence[CognitionEntry]) -> list[CognitionEntry]:
    """Drops exact repeats (the same entry ingested twice), keeping the first."""
    seen, kept = set(), []
    for e in entries:
        key = (e.title, e.design_insight)
        if key not in seen:
            seen.add(key)
            kept.append(e)
    return kept
