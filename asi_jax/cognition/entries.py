"""Cognition entries: what the researcher may draw on, one insight of one paper each.

The fields are ASI-Arch's. EXPERIMENTAL_TRIGGER_PATTERNS says in which experimental situation
the insight applies; the analyser's problem summary is matched against it.

    entries = load_jsonl(path)                 # our format: one JSON object per line
    entries = ingest_asi_arch(folder_or_file)  # ASI-Arch's: one JSON file per paper
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Sequence
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


# `**Title**: X`, `**Title:** X` or `Title: X`, up to the line's end or the next `**` field.
_TITLE = re.compile(r"^[\s*_#-]*title[\s*_]*:[\s*_]*(.+?)\s*(?:\*\*|$)", re.I | re.M)
_ARXIV_ID = re.compile(r"\d{4}\.\d{4,5}(v\d+)?")
_SUFFIXES = (".json", ".jsonl")


def title_from_background(background) -> str | None:
    """The paper's title from a BACKGROUND's `**Title**: ...` line, as ASI-Arch writes it
    (BACKGROUND may be one text or a list of lines)."""
    lines = background if isinstance(background, list) else [background]
    for line in lines:
        match = _TITLE.search(line) if isinstance(line, str) else None
        if match:
            return match.group(1).strip()
    return None


def _paper_id(file: Path) -> str:
    """A file's name as the paper's id: never its path, which is the ingesting machine's."""
    return f"arXiv:{file.stem}" if _ARXIV_ID.fullmatch(file.stem) else file.stem.replace("_", " ")


def _discover(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in _SUFFIXES and p.is_file())


def _items(file: Path) -> list:
    text = file.read_text()
    if file.suffix.lower() == ".jsonl":
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            try:
                items.extend([json.loads(line)] if line.strip() else [])
            except json.JSONDecodeError as e:
                raise CognitionFormatError(f"{file}:{number}: not valid JSON ({e.msg})") from None
        return items
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        raise CognitionFormatError(f"{file}: not valid JSON ({e.msg}, line {e.lineno})") from None
    items = [items] if isinstance(items, dict) else items
    if not isinstance(items, list):
        raise CognitionFormatError(f"{file}: expected a list of entries")
    return items


def ingest_asi_arch(path: str | Path, warn: Callable[[str], None] = print) -> list[CognitionEntry]:
    """Entries from ASI-Arch's cognition format: a file, or a folder searched recursively for
    `.json` / `.jsonl` files (any case), each one paper holding a list of objects (a `.jsonl`:
    one per line) with the five upper-case fields.

    Each entry's title is its BACKGROUND's `**Title**:` line (else the file's name) and its
    source the paper's id (the file's name), so no local path reaches a prompt or an index
    key. A malformed file or entry is skipped and `warn` told why; a summary with the counts
    follows. Raises only when nothing at all could be ingested.
    """
    path = Path(path)
    files = _discover(path)
    if not files:
        raise CognitionFormatError(f"{path}: no .json or .jsonl files to ingest")
    entries, problems, bad_files = [], [], 0
    for file in files:
        try:
            items = _items(file)
        except (OSError, UnicodeDecodeError, CognitionFormatError) as e:
            problems.append(str(e) if isinstance(e, CognitionFormatError) else f"{file}: {e}")
            bad_files += 1
            continue
        source = _paper_id(file)
        for i, item in enumerate(items):
            background = item.get("BACKGROUND") if isinstance(item, dict) else None
            title = title_from_background(background) if background else None
            try:
                entry = entry_from_json(item, f"{file}[{i}]", title=title or source,
                                        source=source)  # fmt: skip
            except CognitionFormatError as e:
                problems.append(str(e))
                continue
            entries.append(entry)
    for problem in problems:
        warn(f"cognition: skipped {problem}")
    if problems:
        bad_entries = len(problems) - bad_files
        warn(f"cognition: ingested {len(entries)} entries from {path}; skipped as malformed "
             f"{bad_files} of {len(files)} files and {bad_entries} entries")  # fmt: skip
    if not entries:
        raise CognitionFormatError(f"{path}: nothing could be ingested ({'; '.join(problems)})")
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
