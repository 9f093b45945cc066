"""Keep patterns over arbitrary input: never a surprise exception, never a partly kept folder,
and the same answers as a plain recursive matcher written from the rules of SPEC 5."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from tmp_monitor import keep

# A small alphabet makes patterns and paths meet often; '\n' and a surrogate escape stand for
# the characters a real /tmp may hold.
PATTERN_CHARS = st.sampled_from(["a", "b", ".", "*", "?", "/", "\n", "\udcff", "**"])
NAME_CHARS = st.sampled_from(["a", "b", ".", "\n", "\udcff"])
names = (
    st.lists(NAME_CHARS, min_size=1, max_size=4).map("".join).filter(lambda n: n not in (".", ".."))
)
paths = st.lists(names, min_size=1, max_size=5)
small_patterns = st.lists(PATTERN_CHARS, min_size=1, max_size=8).map("".join)
fs_text = st.binary(max_size=40).map(os.fsdecode)
any_value = st.one_of(st.text(max_size=60), fs_text, small_patterns)


def _glob(pattern: str, name: str) -> bool:
    """One segment against one name, by plain recursion."""
    if not pattern:
        return not name
    if pattern[0] == "*":
        return any(_glob(pattern[1:], name[i:]) for i in range(len(name) + 1))
    if not name:
        return False
    return (pattern[0] == "?" or pattern[0] == name[0]) and _glob(pattern[1:], name[1:])


def _segments_match(segments: list[str], names_: list[str]) -> bool:
    if not segments:
        return not names_
    if segments[0] == "**":
        return any(_segments_match(segments[1:], names_[i:]) for i in range(len(names_) + 1))
    return (
        bool(names_) and _glob(segments[0], names_[0]) and _segments_match(segments[1:], names_[1:])
    )


def oracle(pattern: str, path: list[str], is_dir: bool) -> bool | None:
    """SPEC 5 read literally; None for a bad pattern. Only for patterns of PATTERN_CHARS."""
    if pattern.startswith("/"):
        return None
    dir_only = pattern.endswith("/")
    body = pattern.rstrip("/")
    segments = [s for s in body.split("/") if s not in ("", ".")]
    if ".." in segments or not segments:
        return None
    if "/" not in body:
        segments = ["**", *segments]
    for depth in range(1, len(path) + 1):
        folder = depth < len(path) or is_dir
        if (folder or not dir_only) and _segments_match(segments, path[:depth]):
            return True
    return False


@settings(max_examples=400, deadline=None)
@given(small_patterns, paths, st.booleans())
def test_keeps_agrees_with_a_plain_recursive_matcher(
    pattern: str, path: list[str], is_dir: bool
) -> None:
    expected = oracle(pattern, path, is_dir)
    try:
        kept = keep.compile_patterns([pattern])
    except ValueError:
        assert expected is None, pattern
        return
    assert expected is not None, pattern
    relpath = "/".join(path)
    defaults = keep.DEFAULT_KEEP_LIST.keeps(relpath, is_dir)
    assert kept.keeps(relpath, is_dir) is (expected or defaults), (pattern, relpath)


@settings(deadline=None)
@given(any_value)
def test_parse_raises_nothing_but_value_error(value: str) -> None:
    try:
        keep.parse(value)
    except ValueError as error:
        assert "bad keep pattern" in str(error)
        assert "\n" not in str(error)


@settings(deadline=None)
@given(
    st.lists(any_value, max_size=3), st.lists(st.one_of(names, fs_text), max_size=5), st.booleans()
)
def test_keeps_never_raises(values: list[str], path: list[str], is_dir: bool) -> None:
    try:
        kept = keep.compile_patterns(values)
    except ValueError:
        return
    relpath = "/".join(path)
    assert isinstance(kept.keeps(relpath, is_dir), bool)
    assert isinstance(kept.may_keep_below(relpath), bool)


@settings(max_examples=300, deadline=None)
@given(st.lists(small_patterns, min_size=1, max_size=3), paths, paths, st.booleans())
def test_a_kept_folder_keeps_everything_under_it(
    patterns: list[str], folder: list[str], below: list[str], is_dir: bool
) -> None:
    try:
        kept = keep.compile_patterns(patterns)
    except ValueError:
        return
    if kept.keeps("/".join(folder), is_dir=True):
        assert kept.keeps("/".join(folder + below), is_dir)


@settings(max_examples=300, deadline=None)
@given(st.lists(small_patterns, min_size=1, max_size=3), paths, paths, st.booleans())
def test_may_keep_below_false_means_nothing_below_is_kept(
    patterns: list[str], folder: list[str], below: list[str], is_dir: bool
) -> None:
    try:
        kept = keep.compile_patterns(patterns)
    except ValueError:
        return
    if not kept.may_keep_below("/".join(folder)):
        assert not kept.keeps("/".join(folder + below), is_dir)
