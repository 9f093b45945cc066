"""Keep patterns: what the purge never removes (SPEC section 5, `TMP_MONITOR_KEEP`).

Patterns are matched against the path relative to `/tmp`, with `/` separators, the way
`.gitignore` patterns are:

- a pattern without `/` matches a name at any depth (`*.db`, `models`);
- a pattern with a `/` before its end is anchored at `/tmp` (`cache/models`). A leading `/` is a
  bad value (an absolute path: write `cache`, not `/tmp/cache`); to anchor a single name, write
  `./name`. `.` segments are dropped, a `..` segment (climbing out of `/tmp`) is a bad value;
- `*` matches any run of characters and `?` one character, both within one segment; they match
  a leading dot too (`*` matches `.cache`), as in `.gitignore`; `[abc]`, `[a-z]`, `[!a-z]` are
  character classes of one character, never `/`;
- a segment that is exactly `**` spans any number of segments, zero included: `a/**/b` matches
  `a/b` and `a/x/y/b`, `**/b` is `b`, and `a/**` is `a` itself with all it holds (unlike
  `.gitignore`, where `a/**` spares an empty `a`). `**` inside a segment is a plain `*`;
- a trailing `/` restricts the pattern to folders, as in `.gitignore`: `cache/` keeps a folder
  named `cache` at any depth and all it holds, never a file named `cache`;
- a pattern that matches a folder keeps its whole subtree;
- `\\` makes the next character literal (`\\*`, `\\?`, `\\[`, `\\,`, `\\\\`, `\\!`); a pattern
  that starts with an unescaped `!` is a bad value (`.gitignore` negation is not supported: a
  keep list only ever adds);
- matching is literal and case-sensitive on any characters, newlines and the surrogate escapes
  of `os.fsdecode` included.

`TMP_MONITOR_KEEP` holds patterns separated by commas; blanks around each are ignored, empty
items are skipped. The files of `DEFAULT_KEEP` are always kept as well.

Each pattern is compiled once into a regular expression, and all of them into one alternation,
so that `KeepList.keeps` is a single `re.fullmatch` per entry. Every `**` and `*` is matched
with an atomic group at the earliest place the fixed text after it fits, which is always enough
because whatever follows may absorb the rest; so no pattern backtracks exponentially, whatever
a path holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "DEFAULT_KEEP",
    "DEFAULT_KEEP_LIST",
    "KeepList",
    "compile_patterns",
    "parse",
    "split_patterns",
]

# Files that other well-known tools create in /tmp and read again later in the same
# environment; removing them breaks those tools (reference/memory-and-tmp.md, section 8). All
# are anchored at /tmp, where the tools put them, so that a user's own folders are not spared.
DEFAULT_KEEP: Final[tuple[str, ...]] = (
    # Lumigo's Python tracer, with LUMIGO_USE_TRACER_EXTENSION, writes its spans here for the
    # Lumigo extension to ship after the invocation: purging it loses the traces.
    "./lumigo-spans",
    # PyInstaller one-file executables (extensions shipped as one binary) unpack their Python
    # and libraries into /tmp/_MEIxxxxxx at start and load modules from it while they run.
    "./_MEI*",
    # staticx-wrapped executables unpack their bundled loader and libraries into
    # /tmp/staticx-XXXXXX at start and run from there.
    "./staticx-*",
    # Nuitka one-file executables unpack into {TEMP}/onefile_{PID}_{TIME} by default, and run
    # from there.
    "./onefile_*",
)
# Lambda Insights' own /tmp files are not listed: their path is undocumented (the reference
# asks for a listing on a real function first), and a guessed pattern would spare user files.

_MAX_PATTERN_CHARS: Final = 4096  # PATH_MAX: no longer pattern can match a real path
_BOUNDARY: Final = "(?![^/])"  # the end of a segment: a '/' or the end of the path
_ANY_PATHS: Final = "[^/]+(?:/[^/]+)*"  # a lone `**`: one or more whole segments


def _bad(pattern: str, why: str) -> ValueError:
    shown = repr(pattern) if len(pattern) <= 60 else f"{pattern[:60]!r}..."
    return ValueError(f"bad keep pattern {shown}: {why}")


def _class_regex(text: str, start: int) -> tuple[str, int]:
    """The regex of the character class opening at text[start] == '[', and the index after it."""
    i = start + 1
    negate = i < len(text) and text[i] in "!^"
    if negate:
        i += 1
    members: list[str] = []
    first = True
    while True:
        if i >= len(text):
            raise _bad(text, "'[' opens a character class that is never closed (write \\[)")
        c = text[i]
        if c == "]" and not first:
            i += 1
            break
        first = False
        if c == "\\":
            if i + 1 >= len(text):
                raise _bad(text, "it ends with a lone '\\'")
            c = text[i + 1]
            i += 1
        i += 1
        if i + 1 < len(text) and text[i] == "-" and text[i + 1] != "]":
            end = text[i + 1]
            i += 2
            if end == "\\":
                if i >= len(text):
                    raise _bad(text, "it ends with a lone '\\'")
                end = text[i]
                i += 1
            if end < c:
                raise _bad(text, f"the range {c}-{end} of a character class is reversed")
            members.append(f"{re.escape(c)}-{re.escape(end)}")
        else:
            members.append(re.escape(c))
    body = "".join(members)
    # A class never matches the separator, as in .gitignore.
    return (f"[^{body}/]" if negate else f"(?!/)[{body}]"), i


def _segments(pattern: str) -> tuple[list[list[str]], bool, bool]:
    """Split a pattern into segments of item regexes ('*' stands for a star).

    Returns the segments, whether the pattern is anchored, and whether it is for folders only.
    """
    segments: list[list[str]] = [[]]
    # Item lists hold regex pieces; a star is kept as the bare "*", which no escaped literal
    # or class can be, so that the segment builder can tell them apart.
    raw: list[list[str]] = [[]]  # the unescaped text of each segment, to find '.', '..', '**'
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "/":
            segments.append([])
            raw.append([])
            i += 1
            continue
        if c == "\\":
            if i + 1 >= len(pattern):
                raise _bad(pattern, "it ends with a lone '\\'")
            literal = pattern[i + 1]
            if literal == "/":
                raise _bad(pattern, "a name cannot hold '/', so '\\/' means nothing")
            segments[-1].append(re.escape(literal))
            raw[-1].append("\\")  # marks the segment as not a bare '.', '..' or '**'
            i += 2
        elif c == "*":
            segments[-1].append("*")
            raw[-1].append("*")
            i += 1
        elif c == "?":
            segments[-1].append("[^/]")
            raw[-1].append("?")
            i += 1
        elif c == "[":
            regex, i = _class_regex(pattern, i)
            segments[-1].append(regex)
            raw[-1].append("[")
        else:
            segments[-1].append(re.escape(c))
            raw[-1].append(c)
            i += 1
    dir_only = len(segments) > 1 and not raw[-1]
    while len(segments) > 1 and not raw[-1]:
        segments.pop()
        raw.pop()
    anchored = len(segments) > 1
    kept: list[list[str]] = []
    for items, text in zip(segments, raw, strict=True):
        name = "".join(text)
        if name in ("", "."):  # empty from '//' or './': nothing to match
            continue
        if name == "..":
            raise _bad(pattern, "a '..' segment climbs out of /tmp")
        kept.append(["**"] if name == "**" else items)
    if not kept:
        raise _bad(pattern, "it names /tmp itself (to keep everything, write '**')")
    return kept, anchored, dir_only


def _segment_regex(items: list[str]) -> str:
    """One segment (stars collapsed): fixed chunks between stars, each at its earliest fit."""
    chunks: list[str] = [""]
    for item in items:
        if item == "*":
            chunks.append("")
        else:
            chunks[-1] += item
    if len(chunks) == 1:
        return chunks[0] + _BOUNDARY
    middle = "".join(f"(?>[^/]*?{chunk})" for chunk in chunks[1:-1])
    return f"{chunks[0]}{middle}[^/]*{chunks[-1]}{_BOUNDARY}"


def _collapse_stars(items: list[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if not (item == "*" and out and out[-1] == "*"):
            out.append(item)
    return out


@dataclass(frozen=True, slots=True)
class _Pattern:
    text: str
    regex: str  # matches the pattern's own path, whole segments, no anchors
    dir_only: bool
    # Per segment, the compiled segment regex, or None for `**`; for may_keep_below.
    steps: tuple[re.Pattern[str] | None, ...]


def _compile_one(pattern: str) -> _Pattern:
    if len(pattern) > _MAX_PATTERN_CHARS:
        raise _bad(pattern, f"longer than {_MAX_PATTERN_CHARS} characters")
    if pattern.startswith("/"):
        raise _bad(pattern, "absolute; patterns are relative to /tmp ('cache', not '/tmp/cache')")
    if pattern.startswith("!"):
        raise _bad(pattern, "negation is not supported (write \\! for a name that starts with !)")
    segments, anchored, dir_only = _segments(pattern)
    # Segment regexes, None standing for `**`; an unanchored pattern is `**/pattern`.
    tokens: list[str | None] = [] if anchored else [None]
    for items in segments:
        if items == ["**"]:
            if tokens and tokens[-1] is None:
                continue
            tokens.append(None)
        else:
            tokens.append(_segment_regex(_collapse_stars(items)))
    if len(tokens) > 1 and tokens[-1] is None:
        tokens.pop()  # `a/**` is `a`: a folder's match already keeps all it holds
    if tokens == [None]:
        regex = _ANY_PATHS
    else:
        parts: list[str] = []
        i = 0
        while i < len(tokens):
            sep = "/" if parts else ""
            token = tokens[i]
            if token is None:
                j = i + 1
                while j < len(tokens) and tokens[j] is not None:
                    j += 1
                run = "/".join(t for t in tokens[i + 1 : j] if t is not None)
                # The earliest place the run of segments fits is enough: what follows it is
                # either another `**` or the rest of the path, and either absorbs anything.
                parts.append(f"(?>{sep}(?:[^/]+/)*?{run})")
                i = j
            else:
                parts.append(sep + token)
                i += 1
        regex = "".join(parts)
    steps = tuple(None if token is None else re.compile(token, re.DOTALL) for token in tokens)
    return _Pattern(pattern, regex, dir_only, steps)


def _alternation(alternatives: list[str]) -> re.Pattern[str] | None:
    if not alternatives:
        return None
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.DOTALL)


@dataclass(frozen=True, slots=True)
class KeepList:
    """Compiled keep patterns (the user's, then DEFAULT_KEEP). Build it with `parse`."""

    patterns: tuple[str, ...]
    _file_re: re.Pattern[str] | None = field(repr=False, compare=False)
    _dir_re: re.Pattern[str] | None = field(repr=False, compare=False)
    _steps: tuple[tuple[re.Pattern[str] | None, ...], ...] = field(repr=False, compare=False)
    _unanchored: bool = field(repr=False, compare=False)

    def keeps(self, relpath: str, is_dir: bool = False) -> bool:
        """Whether the entry at /tmp/<relpath> is kept: it, or a folder it is in, matches.

        relpath is relative to /tmp, '/'-separated, without leading, trailing or doubled '/'
        (as os.path.relpath or a walk joining names gives it). is_dir says the entry is a folder
        (not a symlink to one), for patterns that end with '/'. A kept folder keeps all it
        holds, so a walk that finds a kept folder need not look inside.
        """
        regex = self._dir_re if is_dir else self._file_re
        return regex is not None and regex.fullmatch(relpath) is not None

    def may_keep_below(self, reldir: str) -> bool:
        """Whether anything under the folder /tmp/<reldir> may be kept ('' is /tmp itself).

        False means no path strictly below reldir matches any pattern, so a purge may remove
        the subtree without asking `keeps` for each entry (reldir itself is asked separately).
        """
        if self._unanchored:
            return True
        names = reldir.split("/") if reldir else []
        return any(_may_match_below(steps, names) for steps in self._steps)


def _may_match_below(steps: tuple[re.Pattern[str] | None, ...], names: list[str]) -> bool:
    for i, name in enumerate(names):
        if i == len(steps):
            return True  # the pattern matched a folder above: all below it is kept
        step = steps[i]
        if step is None:
            return True  # `**`: any depth may follow
        if step.fullmatch(name) is None:
            return False
    return True  # reldir is a prefix of what the pattern may match


def compile_patterns(patterns: Iterable[str]) -> KeepList:
    """Compile patterns (each exactly as written, no blanks trimmed), plus DEFAULT_KEEP.

    Raises ValueError naming the first bad pattern and why it is bad.
    """
    compiled = [_compile_one(p) for p in (*patterns, *DEFAULT_KEEP)]
    any_path = [f"{p.regex}(?:/.*)?" for p in compiled]
    files = [f"{p.regex}/.+" if p.dir_only else f"{p.regex}(?:/.*)?" for p in compiled]
    return KeepList(
        patterns=tuple(p.text for p in compiled),
        _file_re=_alternation(files),
        _dir_re=_alternation(any_path),
        _steps=tuple(p.steps for p in compiled),
        _unanchored=any(p.steps[0] is None for p in compiled),
    )


def split_patterns(value: str) -> tuple[str, ...]:
    """The patterns of a TMP_MONITOR_KEEP value: split at unescaped commas, blanks trimmed."""
    items: list[str] = []
    current: list[str] = []
    i = 0
    while i <= len(value):
        c = value[i] if i < len(value) else ","
        if c == "\\" and i + 1 < len(value):
            current.append(value[i : i + 2])
            i += 2
            continue
        if c == ",":
            item = _strip_unescaped("".join(current))
            if item:
                items.append(item)
            current = []
        else:
            current.append(c)
        i += 1
    return tuple(items)


def _strip_unescaped(item: str) -> str:
    stripped = item.strip()
    # A blank right after a '\' was escaped: an odd run of backslashes before it shows that.
    trailing = len(stripped) - len(stripped.rstrip("\\"))
    if trailing % 2 == 1 and len(stripped) < len(item.lstrip()):
        stripped += item.lstrip()[len(stripped)]
    return stripped


def parse(value: str) -> KeepList:
    """The keep list of a TMP_MONITOR_KEEP value; raises ValueError on a bad pattern."""
    return compile_patterns(split_patterns(value))


DEFAULT_KEEP_LIST: Final[KeepList] = compile_patterns(())
