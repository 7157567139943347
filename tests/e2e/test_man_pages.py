# The man pages (man/*.md, built into the build tree's packaging/) render without warnings and list
# the same keys, with the same defaults, as the README's tables.
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from conftest import REPO, require

MAN = REPO / "man"
PAGES = ("occproxy.1", "occproxy.yaml.5", "occproxy-rules.5")


def tables(markdown):
    """{first header cell: [(key, default), ...]} of every markdown table in the text."""
    found = {}
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            body = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                cells = [c.strip() for c in row.strip("|").split("|")]
                body.append((cells[0], cells[1]))
            found.setdefault(line.strip("|").split("|")[0].strip() + f"@{i}", body)
    return list(found.values())


def readme_section(title):
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n{title}\n")
    end = re.search(r"\n##+ ", text[start + len(title) + 2:])
    return text[start:start + len(title) + 2 + (end.start() if end else len(text))]


@pytest.mark.parametrize("readme, page, index", [
    ("## Configuration", "occproxy.yaml.5", 0),
    ("## Rules", "occproxy-rules.5", 0),
    ("### Invariants", "occproxy-rules.5", 1),
])
def test_man_pages_list_the_readme_keys(readme, page, index):
    readme_table = tables(readme_section(readme))[0]
    man_table = tables((MAN / f"{page}.md").read_text())[index]
    assert man_table == readme_table


def test_man_pages_render_without_warnings(occproxy_bin):
    require(shutil.which("man"), "man is not installed (package man-db)")
    built = pathlib.Path(occproxy_bin).parent / "packaging"
    for page in PAGES:
        path = built / f"{page}.gz"
        require(path.exists(), f"{path} was not built: go-md2man is missing (scripts/install-deps.sh installs it)")
        result = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(path)],
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, "LC_ALL": "C.UTF-8", "MANWIDTH": "80"})
        # go-md2man writes tables without text blocks, so a long meaning cell makes the table wider
        # than 80 columns; man still renders it (lintian ignores this warning too). Anything else fails.
        warnings = re.sub(r"warning: file '<standard input>', around line \d+:\n  table wider than line width\n", "",
                          result.stderr)
        assert (result.returncode, warnings) == (0, ""), page
