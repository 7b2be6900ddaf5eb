"""Search/replace edits to a candidate file, the block format aider and OpenEvolve use:

    <<<<<<< SEARCH
    lines quoted from the current file
    =======
    the lines that replace them
    >>>>>>> REPLACE

A "diff" researcher answers with such blocks instead of a whole file: cheaper replies, and
children that keep what they do not mean to change. Blocks apply in order, each to the file
as the earlier blocks left it; each SEARCH must match exactly one run of whole lines
(trailing whitespace ignored). Anything that does not apply is an `EditError` whose reason the
model reads on its next try, so it names the block and what was wrong with it.
"""

from __future__ import annotations

import dataclasses
import re

_SEARCH = re.compile(r"^\s*<{5,9} ?SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9} ?REPLACE\s*$")
FORMAT = (
    "<<<<<<< SEARCH\n(lines quoted exactly from the file)\n=======\n(new lines)\n>>>>>>> REPLACE"
)


class EditError(ValueError):
    """Edits that cannot be applied; the message says which block and why."""


@dataclasses.dataclass(frozen=True)
class Edit:
    search: list[str]  # lines, without their newlines
    replace: list[str]


def parse_edits(reply: str) -> list[Edit]:
    """The SEARCH/REPLACE blocks of a reply, in order; text outside them is ignored."""
    edits: list[Edit] = []
    lines = reply.splitlines()
    i = 0
    while i < len(lines):
        if not _SEARCH.match(lines[i]):
            if _REPLACE.match(lines[i]):
                raise EditError(f"block {len(edits) + 1}: a >>>>>>> REPLACE line without "
                                "<<<<<<< SEARCH before it")  # fmt: skip
            i += 1
            continue
        n = len(edits) + 1
        search, replace, j = [], [], i + 1
        while j < len(lines) and not _DIVIDER.match(lines[j]):
            if _SEARCH.match(lines[j]) or _REPLACE.match(lines[j]):
                raise EditError(f"block {n} has no ======= line between SEARCH and REPLACE")
            search.append(lines[j])
            j += 1
        if j == len(lines):
            raise EditError(f"block {n} has no ======= line after <<<<<<< SEARCH")
        j += 1
        while j < len(lines) and not _REPLACE.match(lines[j]):
            if _SEARCH.match(lines[j]) or _DIVIDER.match(lines[j]):
                raise EditError(f"block {n} does not end with a >>>>>>> REPLACE line")
            replace.append(lines[j])
            j += 1
        if j == len(lines):
            raise EditError(f"block {n} does not end with a >>>>>>> REPLACE line")
        if not any(line.strip() for line in search):
            raise EditError(f"block {n}'s SEARCH is empty: quote the lines it replaces")
        edits.append(Edit(search, replace))
        i = j + 1
    return edits


def _matches(lines: list[str], search: list[str], key=str.rstrip) -> list[int]:
    """Where `search` starts in `lines`, comparing lines by `key`."""
    wanted = [key(s) for s in search]
    have = [key(s) for s in lines]
    return [i for i in range(len(have) - len(wanted) + 1) if have[i : i + len(wanted)] == wanted]


def apply_edits(source: str, reply: str) -> str:
    """`source` after the SEARCH/REPLACE blocks in `reply`; `EditError` says why not."""
    edits = parse_edits(reply)
    if not edits:
        raise EditError(f"the reply has no edit blocks; write each edit as\n{FORMAT}")
    lines = source.splitlines()
    for n, edit in enumerate(edits, 1):
        found = _matches(lines, edit.search)
        after = " (as the earlier blocks left it)" if n > 1 else ""
        if not found:
            start = next(s.strip() for s in edit.search if s.strip())
            hint = ""
            loose = _matches(lines, edit.search, key=str.strip)
            if loose:
                hint = (f"; it matches at line {loose[0] + 1} if indentation is ignored: keep "
                        "the file's indentation")  # fmt: skip
            raise EditError(
                f"block {n}'s SEARCH text (starting {start[:80]!r}) is not in the file{after}"
                f"{hint}; SEARCH must quote the file's lines exactly"
            )
        if len(found) > 1:
            at = ", ".join(str(i + 1) for i in found[:5])
            raise EditError(
                f"block {n}'s SEARCH text is found {len(found)} times in the file{after} (at "
                f"lines {at}); quote more lines so it is unique"
            )
        i = found[0]
        lines[i : i + len(edit.search)] = edit.replace
    result = "\n".join(lines) + "\n"
    if result.strip() == source.strip():
        raise EditError("the edits leave the file unchanged")
    return result
