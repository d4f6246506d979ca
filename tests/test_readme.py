"""The README and docs/ as a reader meets them: every link lands inside the repository, and the
commands of the README's first screen work as written.

Links: every markdown link `[text](target)`, image `![alt](target)` and HTML `<img src=...>` in
README.md and docs/*.md (outside code) must name a file inside the repository; a target that
leaves the repository root (e.g. `../shared/DESIGN.md` from the README) fails. A `#anchor` must
be a heading of the file it points into (GitHub's heading ids). External links are allowed only
to the hosts in ALLOWED_HOSTS (none is used today).

First screen: the README up to its second `## ` heading, i.e. the pitch, the headline chart and
"Two commands"; it must fit in FIRST_SCREEN_LINES lines and show `make bench` and `make test`.
Every command in its code blocks (and, more broadly, in every code block of the README) is
checked without measuring anything: `make X VAR=...` by a dry run (`make -n`, exit 0) that must
call the expected command, whose own `pushpull ...` line must then parse; `pushpull ...` by
`pushpull.cli.build_parser().parse_args(...)`, and its `--transports` and `--clients` values
against the registry and as integers.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pushpull.cli import build_parser
from pushpull.core import transports

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
ALLOWED_HOSTS = frozenset({"pypi.org", "doi.org"})  # external links may point only here
FIRST_SCREEN_LINES = 40
# what a dry run of each make target shown in the README must call
MAKE_CALLS = {
    "bench": "pushpull bench",
    "test": 'pytest -m "not slow"',
    "test-all": "pytest",
    "demo": "pushpull demo",
    "setup": "",
}

FENCE = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`(?:[^`\n]|\n(?!\s*\n))+`")  # may wrap, not across a blank line
MD_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
IMG_SRC = re.compile(r"<img\b[^>]*\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.I)
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code (links there are not links)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces become hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    ids = set()
    for _, title in HEADING.findall(FENCE.sub("", path.read_text())):
        base = slug(title)
        count = seen.get(base, 0)
        seen[base] = count + 1
        ids.add(base if count == 0 else f"{base}-{count}")
    return ids


def links(path: Path) -> list[str]:
    text = prose(path.read_text())
    return MD_LINK.findall(text) + IMG_SRC.findall(text)


def link_problem(page: Path, target: str) -> str | None:
    parts = urlsplit(target)
    if parts.scheme in ("http", "https"):
        if parts.hostname not in ALLOWED_HOSTS:
            return f"external link to {parts.hostname} (allowed: {sorted(ALLOWED_HOSTS)})"
        return None
    if parts.scheme or parts.netloc:
        return f"not a relative link ({parts.scheme or parts.netloc})"
    if parts.path.startswith("/"):
        return "absolute path"
    file = (page.parent / parts.path).resolve() if parts.path else page
    if not file.is_relative_to(ROOT):
        return "leaves the repository"
    if not file.is_file():
        return "no such file in the repository"
    if parts.fragment and file.suffix == ".md" and parts.fragment not in anchors(file):
        return f"no heading #{parts.fragment} in {file.relative_to(ROOT)}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve_inside_the_repository(page):
    found = links(page)
    problems = [f"{t}: {why}" for t in found if (why := link_problem(page, t))]
    assert not problems, f"{page.relative_to(ROOT)}: " + "; ".join(problems)


def test_the_link_checker_catches_what_it_should():
    """The checker itself: a link out of the repository, a missing file, a missing heading."""
    assert link_problem(README, "../shared/DESIGN.md") == "leaves the repository"
    assert link_problem(README, "docs/nothing-here.md") == "no such file in the repository"
    assert "no heading" in link_problem(README, "docs/protocol.md#no-such-heading")
    assert link_problem(README, "docs/protocol.md#resume-socketio-and-plain-websocket") is None
    assert "external" in link_problem(README, "https://example.com/x")
    assert links_of('[a](b.md) `[c](d.md)` <img src="e.png">\n```\n[f](g.md)\n```\n') == [
        "b.md",
        "e.png",
    ]
    assert links_of("`a\n[x](y.md)` [z](w.md)") == ["w.md"], "inline code may wrap a line"


def links_of(text: str) -> list[str]:
    text = prose(text)
    return MD_LINK.findall(text) + IMG_SRC.findall(text)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / urlsplit(t).path).resolve() for t in links(README) if not urlsplit(t).scheme}
    missing = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not missing, f"docs pages the README does not link: {missing}"


def test_nothing_points_outside_the_repository_by_name():
    for page in PAGES:
        assert "../shared" not in page.read_text(), f"{page.relative_to(ROOT)} names ../shared"


# -- commands -----------------------------------------------------------------------------


def first_screen() -> str:
    lines = README.read_text().splitlines()
    level2 = [i for i, line in enumerate(lines) if line.startswith("## ")]
    end = level2[1] if len(level2) > 1 else len(lines)
    return "\n".join(lines[:end])


def commands(markdown: str) -> list[str]:
    """Every command line of the shell code blocks: comments dropped, continuations joined."""
    found = []
    for block in re.findall(r"^```(?:sh|bash|shell)?\n(.*?)^```", markdown, re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = strip_comment(line).strip()
            if command:
                found.append(command)
    return found


def strip_comment(line: str) -> str:
    """A line without its trailing `# comment` (a # inside quotes stays)."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index]
    return line


def check_pushpull(argv: list[str]) -> None:
    """argv after `pushpull`: it must parse, and name only registered transports."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"`pushpull {shlex.join(argv)}` does not parse (exit {exc.code})")
    for name in (getattr(args, "transports", None) or "").replace(",", " ").split():
        assert name in transports.NAMES, f"`pushpull {shlex.join(argv)}`: unknown {name!r}"
    for count in (getattr(args, "clients", None) or "").replace(",", " ").split():
        assert count.isdigit(), f"`pushpull {shlex.join(argv)}`: --clients {count!r}"


def check_make(argv: list[str]) -> str:
    """argv after `make`: a dry run succeeds and calls what the target stands for."""
    target = next(a for a in argv if "=" not in a and not a.startswith("-"))
    assert target in MAKE_CALLS, f"`make {target}` in the README: say what it must call"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", str(ROOT), *argv],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode == 0, f"`make -n {shlex.join(argv)}`: {done.stderr.strip()}"
    script = done.stdout.replace("\\\n", " ")
    assert MAKE_CALLS[target] in script, (
        f"`make {shlex.join(argv)}` would not call {MAKE_CALLS[target]!r}"
    )
    for line in script.splitlines():
        words = shlex.split(line)
        for index, word in enumerate(words):
            if word == "pushpull" or word.endswith("/pushpull"):
                check_pushpull(words[index + 1 :])
                break
    return script


def check(command: str) -> None:
    words = shlex.split(command)
    if words[0] == "make":
        check_make(words[1:])
    elif words[0] == "pushpull":
        check_pushpull(words[1:])
    else:
        pytest.fail(f"a README command neither make nor pushpull: {command!r}")


def test_first_screen_is_short_and_shows_the_two_commands():
    screen = first_screen()
    assert len(screen.splitlines()) <= FIRST_SCREEN_LINES, "the first screen is too long"
    shown = commands(screen)
    assert "make bench" in shown and "make test" in shown, shown
    assert "docs/images/" in screen, "the headline chart is in the first screen"


@pytest.mark.parametrize("command", commands(first_screen()))
def test_first_screen_command(command):
    check(command)


README_COMMANDS = [c for c in commands(README.read_text()) if c not in commands(first_screen())]


@pytest.mark.parametrize("command", README_COMMANDS)
def test_readme_command(command):
    check(command)


def test_command_checks_catch_mistakes():
    """The checks themselves: a flag that does not exist, an unknown transport, a bad target."""
    with pytest.raises(pytest.fail.Exception):
        check("pushpull bench --no-such-flag 3")
    with pytest.raises(AssertionError):
        check("pushpull bench --transports socketio,carrier-pigeon")
    with pytest.raises(AssertionError):
        check("make no-such-target")
    assert commands("```sh\nmake a X='1 # 2'  # note\npushpull b \\\n  --c 1\n```\n") == [
        "make a X='1 # 2'",
        "pushpull b    --c 1",
    ]
