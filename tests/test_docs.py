"""The documentation runs as written: every Python snippet of README.md and docs/*.md, and every link.

The snippets read ``make demo``'s outputs from the folder that holds ``demo_output/``; here that folder is a
temporary one whose ``demo_output/`` holds the suite's demo-shaped outputs (conftest's shards of the synthetic
corpus, their ArrayRecord copy and a trained model). A snippet that needs other data or a package outside the
test extra carries ``<!-- docs-test: skip (why) -->`` on the line above its fence. The snippets of one page run
in one Python process, each in a namespace of its own, in page order; one that picks a Keras backend
(``KERAS_BACKEND``, read at keras' first import) gets a process of its own.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import subprocess
import sys
import textwrap

import helpers
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md", *sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))]
SKIP = re.compile(r"<!-- docs-test: skip \((.+)\) -->")

# Runs the snippets of a JSON file [[label, code], ...]: "ok LABEL" per snippet, the traceback of the first failure.
RUNNER = """
import json, sys, traceback
for label, code in json.load(open(sys.argv[1])):
    try:
        exec(compile(code, label, "exec"), {"__name__": "__main__"})
    except BaseException:
        print(f"FAILED {label}", flush=True)
        traceback.print_exc()
        sys.exit(1)
    print(f"ok {label}", flush=True)
"""


@dataclasses.dataclass(frozen=True)
class Snippet:
    page: str
    line: int  # of the opening fence, 1-based
    code: str
    skip: str | None  # why it is not run

    @property
    def label(self) -> str:
        return f"{self.page}:{self.line}"


def snippets(page: str) -> list[Snippet]:
    """The ```python blocks of ``page`` (relative to the repository)."""
    with open(os.path.join(REPO, page)) as f:
        lines = f.read().split("\n")
    found, start, skip = [], None, None
    for number, line in enumerate(lines, 1):
        if start is None and line.strip() == "```python":
            start = number
            above = next((lines[i] for i in range(number - 2, -1, -1) if lines[i].strip()), "")
            match = SKIP.fullmatch(above.strip())
            skip = match.group(1) if match else None
        elif start is not None and line.strip() == "```":
            # A block inside a list item is indented with it.
            found.append(Snippet(page, start, textwrap.dedent("\n".join(lines[start:number - 1]) + "\n"), skip))
            start = None
    assert start is None, f"{page}:{start}: a ```python block that never closes"
    return found


def _groups(page_snippets: list[Snippet]) -> list[list[Snippet]]:
    """Consecutive snippets that share a process; a backend-choosing one alone."""
    groups: list[list[Snippet]] = []
    for snippet in page_snippets:
        if "KERAS_BACKEND" in snippet.code:
            groups += [[snippet], []]
        else:
            groups[-1:] = [[*(groups[-1] if groups else []), snippet]]
    return [g for g in groups if g]


def test_the_snippets_are_found_and_each_skip_says_why():
    by_page = {page: snippets(page) for page in PAGES}
    assert {"docs/reading.md", "docs/training.md", "docs/serving.md"} <= set(by_page)
    assert len(by_page["docs/reading.md"]) >= 6 and by_page["README.md"]
    skipped = [s for found in by_page.values() for s in found if s.skip]
    assert all(len(s.skip) > 10 for s in skipped)
    # Most run: the skips are the exceptions (torch, audio-only shards), not the rule.
    assert len(skipped) <= 3 < sum(len(found) for found in by_page.values()) - len(skipped)
    assert _groups([Snippet("p", 1, "a\n", None), Snippet("p", 2, "KERAS_BACKEND\n", None),
                    Snippet("p", 3, "b\n", None), Snippet("p", 4, "c\n", None)]) == [
        [Snippet("p", 1, "a\n", None)], [Snippet("p", 2, "KERAS_BACKEND\n", None)],
        [Snippet("p", 3, "b\n", None), Snippet("p", 4, "c\n", None)]]


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory, tfrecords_dir, array_record_dir, fit_run):
    """A folder whose ``demo_output/`` has what ``make demo`` writes there and the snippets read."""
    folder = tmp_path_factory.mktemp("docs")
    out = folder / "demo_output"
    out.mkdir()
    for name, target in [("tfrecords", tfrecords_dir), ("array_record", array_record_dir),
                         ("model", fit_run["model_dir"])]:
        (out / name).symlink_to(target, target_is_directory=True)
    return folder


RUN_PAGES = [page for page in PAGES if any(not s.skip for s in snippets(page))]


@pytest.mark.parametrize("page", RUN_PAGES)
def test_every_snippet_runs_as_written_on_the_demo_outputs(page, demo_folder, tmp_path):
    env = helpers.repo_env(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("KERAS_BACKEND", None)
    runnable = [s for s in snippets(page) if not s.skip]
    for index, group in enumerate(_groups(runnable)):
        work = tmp_path / f"cwd_{index}"  # what a snippet writes (model.keras, weights) lands here
        work.mkdir()
        (work / "demo_output").symlink_to(demo_folder / "demo_output", target_is_directory=True)
        listing = tmp_path / f"snippets_{index}.json"
        listing.write_text(json.dumps([[s.label, s.code] for s in group]))
        proc = subprocess.run([sys.executable, "-c", RUNNER, str(listing)], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        done = [line[3:] for line in proc.stdout.splitlines() if line.startswith("ok ")]
        assert done == [s.label for s in group], proc.stdout[-3000:]


LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(page: str) -> set[str]:
    """GitHub's anchors of the headings of ``page``."""
    anchors, fenced = set(), False
    with open(os.path.join(REPO, page)) as f:
        for line in f:
            fenced ^= line.startswith("```")
            match = None if fenced else re.match(r"#+ (.+)", line)
            if match:
                anchors.add(re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-"))
    return anchors


def test_every_link_between_the_pages_lands_on_a_file_and_heading():
    broken = []
    for page in PAGES:
        with open(os.path.join(REPO, page)) as f:
            text = f.read()
        for target in LINK.findall(text):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            if not os.path.exists(os.path.join(REPO, resolved)):
                broken.append(f"{page}: {target} (no file {resolved})")
            elif anchor and (not resolved.endswith(".md") or anchor not in _anchors(resolved)):
                broken.append(f"{page}: {target} (no heading #{anchor} in {resolved})")
    assert not broken, "\n".join(broken)
