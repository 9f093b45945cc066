"""Keep patterns (SPEC 5): what the purge spares, pattern by pattern, path by path."""

from __future__ import annotations

import os

import pytest

from tmp_monitor import keep

F, D = False, True  # the entry asked about is a file / a folder

# (patterns as TMP_MONITOR_KEEP holds them, path relative to /tmp, is a folder, kept)
CASES: list[tuple[str, str, bool, bool]] = [
    # a name without '/' matches at any depth
    ("*.db", "a.db", F, True),
    ("*.db", "x/y/a.db", F, True),
    ("*.db", "a.db.tmp", F, False),
    ("*.db", "a.dbx", F, False),
    ("*.db", "adb", F, False),
    ("models", "models", D, True),
    ("models", "cache/models", D, True),
    ("models", "cache/models/weights.bin", F, True),
    ("models", "cache/models2/weights.bin", F, False),
    ("models", "cache/mymodels", D, False),
    # '*' stays within one segment, and matches dot files as .gitignore does
    ("*", "anything", F, True),
    ("*", ".hidden", F, True),
    ("cache/*", "cache/a", F, True),
    ("cache/*", "cache/a/b", F, True),  # cache/a matched: a folder keeps its subtree
    ("cache/*", "cache", D, False),
    ("cache/*", "other/a", F, False),
    ("c*e/x", "cache/x", F, True),
    ("c*e/x", "c/e/x", F, False),
    ("*a*b", "xaxb", F, True),
    ("*a*b", "aab", F, True),
    ("*a*b", "ab", F, True),
    ("*a*b", "ba", F, False),
    ("a*a", "a", F, False),
    ("a*a", "aa", F, True),
    (".*", ".cache", D, True),
    (".*", "x/.git/config", F, True),
    (".*", "x/git", F, False),
    # '?' is exactly one character, never '/'
    ("file?.txt", "file1.txt", F, True),
    ("file?.txt", "file.txt", F, False),
    ("file?.txt", "file12.txt", F, False),
    ("a?b", "a/b", F, False),
    # character classes
    ("log[0-9]", "log7", F, True),
    ("log[0-9]", "logx", F, False),
    ("log[!0-9]", "logx", F, True),
    ("log[!0-9]", "log7", F, False),
    ("[]]x", "]x", F, True),
    # a pattern with '/' is anchored at /tmp
    ("cache/models", "cache/models", D, True),
    ("cache/models", "cache/models/a/b.bin", F, True),
    ("cache/models", "x/cache/models", D, False),
    ("cache/models", "cache", D, False),
    ("./state.json", "state.json", F, True),
    ("./state.json", "sub/state.json", F, False),
    ("a//b", "a/b", F, True),
    ("a/./b", "a/b", F, True),
    # '**' spans any number of segments, zero included
    ("**/x.db", "x.db", F, True),
    ("**/x.db", "a/b/c/x.db", F, True),
    ("a/**/b", "a/b", F, True),
    ("a/**/b", "a/x/b", F, True),
    ("a/**/b", "a/x/y/z/b", F, True),
    ("a/**/b", "a/x/y/z/bb", F, False),
    ("a/**/b", "x/a/b", F, False),
    ("a/**/b/**/c", "a/1/b/2/b/3/c", F, True),
    ("a/**/b/**/c", "a/b/c", F, True),
    ("a/**/b/**/c", "a/c/b", F, False),
    ("a/**", "a", D, True),
    ("a/**", "a/deep/file", F, True),
    ("a/**", "ab/file", F, False),
    ("**", "anything/at/all", F, True),
    ("a**b", "axyb", F, True),  # '**' inside a segment is a plain '*'
    ("a**b", "ax/yb", F, False),
    # a trailing '/' means folders only, at any depth unless a '/' comes before it
    ("logs/", "logs", D, True),
    ("logs/", "logs", F, False),
    ("logs/", "x/logs", D, True),
    ("logs/", "x/logs/today.txt", F, True),
    ("a/logs/", "a/logs/f", F, True),
    ("a/logs/", "b/a/logs/f", F, False),
    ("**/", "top-file", F, False),
    ("**/", "dir/file", F, True),
    # escapes make special characters literal; commas separate patterns
    (r"\*.txt", "*.txt", F, True),
    (r"\*.txt", "a.txt", F, False),
    (r"what\?", "what?", F, True),
    (r"what\?", "whatx", F, False),
    (r"a\,b", "a,b", F, True),
    ("a,b", "b", F, True),
    (" a.db , b.db ", "b.db", F, True),
    (r"x\ ", "x ", F, True),
    (r"\[1]", "[1]", F, True),
    (r"\!important", "!important", F, True),
    # any character literally: newlines, regex syntax, non-UTF-8 names
    ("new\nline", "new\nline", F, True),
    ("new*", "new\nline", F, True),
    ("n?w", "n\nw", F, True),
    ("a.c", "abc", F, False),
    ("(x)+", "(x)+", F, True),
    ("(x)+", "xx", F, False),
    ("$^", "$^", F, True),
    (os.fsdecode(b"caf\xe9*"), os.fsdecode(b"caf\xe9-1"), F, True),
    (os.fsdecode(b"caf\xe9*"), "café-1", F, False),
    ("*.bin", os.fsdecode(b"\xff\xfe/x.bin"), F, True),
    ("Case.db", "case.db", F, False),
    ("snow☃", "dir/snow☃", F, True),
    # an empty list keeps nothing but the defaults
    ("", "a.db", F, False),
]


@pytest.mark.parametrize(("value", "path", "is_dir", "kept"), CASES)
def test_pattern_keeps_exactly_what_gitignore_rules_say(
    value: str, path: str, is_dir: bool, kept: bool
) -> None:
    assert keep.parse(value).keeps(path, is_dir) is kept


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("/tmp/cache", "absolute"),
        ("/cache", "absolute"),
        ("a.db, /etc", "absolute"),
        ("..", "climbs out"),
        ("../etc/passwd", "climbs out"),
        ("cache/../../etc", "climbs out"),
        ("a/..", "climbs out"),
        (".", "/tmp itself"),
        ("./", "/tmp itself"),
        ("!*.db", "negation"),
        ("abc\\", "lone"),
        ("a\\/b", "cannot hold '/'"),
        ("log[0-9", "never closed"),
        ("log[z-a]", "reversed"),
        ("x" * 5000, "longer"),
    ],
)
def test_bad_pattern_is_a_value_error_saying_why(value: str, why: str) -> None:
    with pytest.raises(ValueError, match="bad keep pattern") as caught:
        keep.parse(value)
    assert why in str(caught.value)


def test_names_that_merely_contain_dots_are_fine() -> None:
    kept = keep.parse("..cache, a/...x")
    assert kept.keeps("..cache")
    assert kept.keeps("a/...x")


@pytest.mark.parametrize(
    "path",
    [
        "lumigo-spans",
        "lumigo-spans/span-1.json",
        "_MEIab12cd",
        "_MEI99/libpython3.11.so",
        "staticx-AbCdEf/ld.so",
        "onefile_12_1700000000/app",
    ],
)
def test_default_keep_spares_other_tools_files_always(path: str) -> None:
    for value in ("", "*.db"):
        assert keep.parse(value).keeps(path), (value, path)


@pytest.mark.parametrize("path", ["cache/lumigo-spans", "x/_MEI1", "staticx", "_ME", "onefile"])
def test_default_keep_spares_nothing_else(path: str) -> None:
    assert not keep.parse("").keeps(path, True)


def test_default_patterns_come_after_the_users() -> None:
    assert keep.parse("a, b").patterns == ("a", "b", *keep.DEFAULT_KEEP)
    assert keep.DEFAULT_KEEP_LIST.patterns == keep.DEFAULT_KEEP


@pytest.mark.parametrize(
    ("value", "patterns"),
    [
        ("", ()),
        (" , ,", ()),
        ("a,b", ("a", "b")),
        ("  a  ,\tb\n", ("a", "b")),
        (r"a\,b,c", (r"a\,b", "c")),
        (r"x\ , y", (r"x\ ", "y")),
        ("x\\\\ ,y", ("x\\\\", "y")),  # an escaped backslash: the blank after it is trimmed
        ("in side,", ("in side",)),
    ],
)
def test_split_patterns(value: str, patterns: tuple[str, ...]) -> None:
    assert keep.split_patterns(value) == patterns


@pytest.mark.parametrize(
    ("value", "reldir", "maybe"),
    [
        ("", "", True),  # the defaults live at the top of /tmp
        ("", "cache", False),
        ("", "_MEIx", True),  # kept itself
        ("cache/models/*.bin", "cache", True),
        ("cache/models/*.bin", "cache/models", True),
        ("cache/models/*.bin", "cache/other", False),
        ("cache/models/*.bin", "data", False),
        ("cache/**/x", "cache/a/b/c", True),
        ("*.db", "anything/at/all", True),
        ("logs/", "deep/dir", True),
    ],
)
def test_may_keep_below_lets_a_purge_skip_whole_subtrees(
    value: str, reldir: str, maybe: bool
) -> None:
    assert keep.parse(value).may_keep_below(reldir) is maybe


def test_keep_list_is_frozen_and_compares_by_patterns() -> None:
    kept = keep.parse("a")
    with pytest.raises(AttributeError):
        kept.patterns = ()  # type: ignore[misc]
    assert kept == keep.parse(" a ")
    assert kept != keep.parse("b")


def test_deep_paths_and_pathological_patterns_match_quickly_enough_to_finish() -> None:
    # Backtracking regexes take exponential time here; this finishes only without it.
    patterns = "*a*a*a*a*a*a*a*a*b, **/a/**/a/**/a/**/a/**/a/**/b"
    kept = keep.parse(patterns)
    path = "/".join(["a"] * 300 + ["a" * 300])
    assert not kept.keeps(path)
    assert kept.keeps(path + "/b")
    assert kept.keeps(path + "b")
