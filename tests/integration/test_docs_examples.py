"""Every Python code block in the documentation runs here, or says why it cannot.

A fenced Python block in ``docs/**/*.md`` (the site's pages are ``docs/pages``) is *runnable*
unless the line(s) just above it carry ``<!-- not-run: REASON -->``. Runnable blocks run, one
test per block (id ``pages/PAGE.md:LINE``), after the substitutions declared in
``docs_substitutions.py``; blocks of one page share a namespace and a temporary working
directory, in page order. Not-run blocks are compiled and their keyword arguments to AutoTimm
classes are checked against the signatures. YAML blocks with a ``trainer``/``model``/``data``
section are parsed by the ``autotimm`` command line.

The marker parser is strict: an unknown marker, a not-run marker without a reason, a marker that
belongs to no block, or a runnable block that needs a GPU or several devices fails
``test_markers``. Set ``AUTOTIMM_REQUIRE_ALL=1`` to turn "package not installed" skips into
failures (for a session that installs everything).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import re
import shutil
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docs_substitutions as subs
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS_ROOT = ROOT / "docs"  # every Markdown file under it is checked, except the built site
DOCS = DOCS_ROOT / "pages"  # the site's pages (mkdocs.yml: docs_dir)
PY_LANGS = {"python", "py", "python3", "pycon"}
YAML_LANGS = {"yaml", "yml"}
MARKER_KEYS = {"not-run", "setup"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
_COMMENT = re.compile(r"^\s*<!--(?P<body>.*?)-->\s*$")
_MARKER = re.compile(r"^\s*(?P<key>[A-Za-z][\w-]*)\s*:\s*(?P<value>.*?)\s*$")


@dataclass
class Block:
    page: str  # relative to docs/, with forward slashes
    line: int  # 1-based line of the opening fence
    code: str
    lang: str = "python"
    markers: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def runnable(self) -> bool:
        return "not-run" not in self.markers

    @property
    def setups(self) -> list[str]:
        value = self.markers.get("setup", "")
        return [s.strip() for s in value.split(",") if s.strip()]


def parse_page(path: Path, rel: str) -> tuple[list[Block], list[str]]:
    """The Python blocks of one page and the page's marker errors (dangling or malformed)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    errors: list[str] = []
    used_comment_lines: set[int] = set()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m.group("indent"), m.group("fence"), m.group("info").strip()
        start = i
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        lang = info.split()[0].lstrip(".{").lower() if info else ""
        if lang in PY_LANGS or lang in YAML_LANGS:
            body = [
                ln[len(indent) :] if ln.startswith(indent) else ln.lstrip()
                for ln in lines[i + 1 : j]
            ]
            kind = "yaml" if lang in YAML_LANGS else "python"
            block = Block(rel, start + 1, "\n".join(body) + "\n", kind)
            if lang == "pycon":
                block.errors.append("pycon blocks cannot run: write a plain python block")
            # Markers: HTML comments on the lines above, blank lines allowed between.
            k = start - 1
            while k >= 0:
                if not lines[k].strip():
                    k -= 1
                    continue
                c = _COMMENT.match(lines[k])
                if not c:
                    break
                used_comment_lines.add(k)
                mk = _MARKER.match(c.group("body"))
                if not mk or mk.group("key") not in MARKER_KEYS:
                    block.errors.append(
                        f"line {k + 1}: unknown marker {lines[k].strip()!r}; "
                        f"known: {sorted(MARKER_KEYS)} as <!-- key: value -->"
                    )
                elif mk.group("key") in block.markers:
                    block.errors.append(f"line {k + 1}: marker {mk.group('key')!r} given twice")
                else:
                    block.markers[mk.group("key")] = mk.group("value")
                k -= 1
            if "not-run" in block.markers and not block.markers["not-run"]:
                block.errors.append("not-run needs a reason: <!-- not-run: needs a GPU -->")
            if kind == "yaml" and "setup" in block.markers:
                block.errors.append("a YAML block takes no setup")
            if "not-run" in block.markers and "setup" in block.markers:
                block.errors.append("a not-run block takes no setup")
            for name in block.setups:
                if name not in subs.SETUPS:
                    block.errors.append(f"unknown setup {name!r}; known: {sorted(subs.SETUPS)}")
            if "setup" in block.markers and not block.setups:
                block.errors.append("setup marker without a name")
            if block.runnable and kind == "python":
                for pattern, why in subs.NEEDS_NOT_RUN:
                    if re.search(pattern, block.code):
                        block.errors.append(
                            f"this block {why}: mark it <!-- not-run: {why} --> or change it"
                        )
            blocks.append(block)
        i = j + 1
    for n, text in enumerate(lines):
        c = _COMMENT.match(text)
        if c and n not in used_comment_lines:
            mk = _MARKER.match(c.group("body"))
            if mk and mk.group("key") in MARKER_KEYS:
                errors.append(
                    f"{rel}:{n + 1}: marker {text.strip()!r} is above no Python or YAML block"
                )
    return blocks, errors


def collect() -> tuple[list[Block], list[str]]:
    blocks, errors = [], []
    for path in sorted(DOCS_ROOT.rglob("*.md")):
        rel = path.relative_to(DOCS_ROOT).as_posix()
        if rel.startswith("site/"):
            continue
        b, e = parse_page(path, rel)
        blocks += b
        errors += e
    return blocks, errors


ALL_BLOCKS, PAGE_ERRORS = collect()
BLOCKS = [b for b in ALL_BLOCKS if b.lang == "python"]
#: YAML blocks with a top-level trainer/model/data section: configurations of the command line.
CONFIGS = [
    b for b in ALL_BLOCKS if b.lang == "yaml" and re.search(r"^(trainer|model|data):", b.code, re.M)
]
RUNNABLE = [b for b in BLOCKS if b.runnable]
NOT_RUN = [b for b in BLOCKS if not b.runnable]


# --------------------------------------------------------------------------- static checks


def test_docs_have_python_blocks():
    assert DOCS.is_dir(), f"{DOCS} is missing"
    assert RUNNABLE, "no runnable Python block found in the docs: is the parser broken?"


def test_markers():
    """Every block is runnable or not-run with a reason; no unknown or dangling marker."""
    problems = list(PAGE_ERRORS)
    problems += [f"{b.id}: {e}" for b in ALL_BLOCKS for e in b.errors]
    assert not problems, "\n".join(problems)


def test_every_substitution_is_used():
    """The substitution table lists only what the docs need (each entry changes some block)."""
    used = {id(s) for b in RUNNABLE for s in subs.substitute(b.code)[1]}
    unused = [s.pattern for s in subs.SUBSTITUTIONS if id(s) not in used]
    assert not unused, f"substitutions that change no runnable block: {unused}"


def _signature_params(cls: Any) -> set[str] | None:
    """Keyword names ``cls(...)`` accepts; None when it takes arbitrary keywords."""
    names: set[str] = set()
    for klass in inspect.getmro(cls) if inspect.isclass(cls) else [cls]:
        if klass is object:
            break
        init = klass.__init__ if inspect.isclass(cls) else klass
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return None
        names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names
        if not inspect.isclass(cls):
            return None
    return None


def _resolve(name: str) -> Any | None:
    """The AutoTimm object ``name`` in ``from autotimm import name``, or None if unavailable."""
    import autotimm

    if name not in autotimm.__all__:
        return None
    try:
        return getattr(autotimm, name)
    except (ImportError, AttributeError):
        return None


@pytest.mark.parametrize("block", NOT_RUN, ids=[b.id for b in NOT_RUN])
def test_not_run_block_is_valid(block: Block):
    """Blocks that cannot run still compile, import real names and pass real keyword arguments."""
    tree = ast.parse(block.code, filename=block.id)
    imported: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "autotimm":
            import autotimm

            for alias in node.names:
                assert alias.name in autotimm.__all__, f"{block.id}: autotimm has no {alias.name!r}"
                imported[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        # Names imported in the block, or AutoTimm names the page imported earlier.
        target = imported.get(node.func.id, node.func.id)
        obj = _resolve(target) if target else None
        if obj is None:
            continue
        accepted = _signature_params(obj)
        if accepted is None:
            continue
        bad = [kw.arg for kw in node.keywords if kw.arg and kw.arg not in accepted]
        assert not bad, f"{block.id}: {target}() takes no keyword(s) {bad}"


# --------------------------------------------------------------------------- running blocks


@dataclass
class PageState:
    workdir: Path
    namespace: dict[str, Any]
    status: dict[str, str] = field(default_factory=dict)  # block id -> "ok"/"failed"/"skipped"


_PAGES: dict[str, PageState] = {}


@pytest.fixture(scope="module")
def fixture_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("docs-files")
    subs.make_files(root)
    return root


def _page_state(page: str, fixture_files: Path, tmp_path_factory) -> PageState:
    if page not in _PAGES:
        workdir = tmp_path_factory.mktemp(re.sub(r"\W", "_", page))
        for entry in fixture_files.iterdir():  # everything make_files wrote
            if entry.is_dir():
                shutil.copytree(entry, workdir / entry.name)
            else:
                shutil.copy(entry, workdir / entry.name)
        _PAGES[page] = PageState(workdir, {"__name__": "__docs__"})
    return _PAGES[page]


def _missing_module(blocks: list[Block]) -> str | None:
    """The first AutoTimm module (or optional extra) these blocks need that cannot be
    imported, else None."""
    text = "\n".join(b.code + "".join(subs.SETUPS[s] for s in b.setups) for b in blocks)
    for pattern, (module, extra) in subs.EXTRA_MODULES.items():
        if re.search(pattern, text) and importlib.util.find_spec(module) is None:
            return f"{module} (the {extra} extra) is not installed"
    for name, module in subs.API_MODULES.items():
        if not re.search(rf"\b{name}\b", text):
            continue
        try:
            mod = importlib.import_module(module)
        except ImportError:
            return f"{module} (for {name}) is not installed"
        if not hasattr(mod, name):
            return f"{module}.{name} does not exist yet"
    return None


def _exec(block: Block, state: PageState) -> None:
    for name in block.setups:
        exec(compile(subs.SETUPS[name], f"<setup {name}>", "exec"), state.namespace)
    code, _ = subs.substitute(block.code)
    # Pad so that tracebacks name the line in the Markdown file.
    source = "\n" * block.line + code
    exec(compile(source, str(DOCS_ROOT / block.page), "exec"), state.namespace)


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_docs_block_runs(block: Block, fixture_files, tmp_path_factory, monkeypatch):
    if block.errors:
        pytest.fail("; ".join(block.errors))
    page_blocks = [b for b in RUNNABLE if b.page == block.page]
    before = page_blocks[: page_blocks.index(block)]
    missing = _missing_module([*before, block])
    if missing:
        if os.environ.get("AUTOTIMM_REQUIRE_ALL"):
            pytest.fail(missing)
        pytest.skip(missing)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    state = _page_state(block.page, fixture_files, tmp_path_factory)
    monkeypatch.chdir(state.workdir)
    for earlier in before:
        status = state.status.get(earlier.id)
        if status == "ok":
            continue
        if status is not None:
            pytest.skip(f"needs the page's earlier block {earlier.id}, which {status}")
        try:  # run alone (e.g. with -k): run what comes before it on the page first
            _exec(earlier, state)
        except Exception:
            state.status[earlier.id] = "failed"
            pytest.fail(f"earlier block {earlier.id} failed:\n{traceback.format_exc()}")
        state.status[earlier.id] = "ok"
    state.status[block.id] = "failed"
    _exec(block, state)
    state.status[block.id] = "ok"


def test_readme_links_every_page():
    """The README links to each page of the site (its source file), and every link resolves."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = {m.split("#")[0] for m in re.findall(r"\]\(([^)\s]+)\)", readme)}
    local = {link for link in links if not re.match(r"[a-z]+:", link) and link}
    broken = sorted(link for link in local if not (ROOT / link).exists())
    assert not broken, f"README links to missing files: {broken}"
    pages = [f"docs/pages/{p.name}" for p in sorted(DOCS.glob("*.md"))] + [
        "docs/pages/api/index.md"
    ]
    missing = [page for page in pages if page not in local]
    assert not missing, f"README does not link to: {missing}"


# --------------------------------------------------------------------------- CLI configurations

CHECKED_CONFIGS = [b for b in CONFIGS if b.runnable]


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("AUTOTIMM_REQUIRE_ALL"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.mark.parametrize("block", CHECKED_CONFIGS, ids=[b.id for b in CHECKED_CONFIGS])
def test_docs_config_parses(block: Block, tmp_path: Path, monkeypatch, capsys):
    """A command-line configuration shown in the docs parses against the installed classes.

    ``autotimm fit --config FILE --print_config`` checks every key and type without building
    anything (no weights downloaded, no data read).
    """
    if block.errors:
        pytest.fail("; ".join(block.errors))
    try:
        from autotimm_trainer import cli
    except ImportError:
        _skip_or_fail("autotimm_trainer (the command line) is not installed")
    for path in re.findall(r"class_path:\s*([\w.]+)", block.code):
        module = path.rpartition(".")[0]
        try:
            importlib.import_module(module)
        except ImportError:
            _skip_or_fail(f"{module} (for {path}) is not installed")
    assert _print_config(cli, block.code, tmp_path, monkeypatch) in (0, None), (
        capsys.readouterr().err[-3000:]
    )


def _print_config(cli: Any, text: str, tmp_path: Path, monkeypatch) -> int | None:
    """Exit code of ``autotimm fit --config <text> --print_config``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["autotimm"])
    config = tmp_path / "config.yaml"
    config.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        cli.build_cli(["fit", "--config", str(config), "--print_config"])
    return exit_info.value.code


def test_config_check_catches_a_wrong_key(tmp_path: Path, monkeypatch, capsys):
    cli = pytest.importorskip("autotimm_trainer.cli")
    assert _print_config(cli, "trainer:\n  max_epoch: 3\n", tmp_path, monkeypatch) not in (0, None)
    assert "max_epoch" in capsys.readouterr().err


# --------------------------------------------------------------------------- the parser itself


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<!-- not-run -->\n```python\nx = 1\n```\n", "unknown marker"),
        ("<!-- not-run: -->\n```python\nx = 1\n```\n", "needs a reason"),
        ("<!-- skip: later -->\n```python\nx = 1\n```\n", "unknown marker"),
        ("<!-- TODO -->\n```python\nx = 1\n```\n", "unknown marker"),
        ("<!-- setup: nothing-like-this -->\n```python\nx = 1\n```\n", "unknown setup"),
        ('```python\nAutoTrainer(accelerator="gpu")\n```\n', "needs a GPU"),
        ("<!-- not-run: gpu -->\n<!-- setup: classifier -->\n```python\n```\n", "no setup"),
        ("<!-- not-run: gpu -->\n\nSome text.\n\n```python\nx = 1\n```\n", "above no Python"),
        ("```pycon\n>>> 1\n```\n", "pycon"),
    ],
)
def test_parser_rejects(tmp_path: Path, text: str, problem: str):
    page = tmp_path / "page.md"
    page.write_text(text)
    blocks, errors = parse_page(page, "page.md")
    found = errors + [e for b in blocks for e in b.errors]
    assert any(problem in e for e in found), found


def test_parser_reads_markers_and_indented_blocks(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n"
        "<!-- not-run: needs a GPU -->\n"
        "```python\nAutoTrainer(accelerator='gpu')\n```\n\n"
        '=== "Tab"\n\n'
        "    <!-- setup: classifier -->\n"
        "    ```python\n    trainer.fit(model)\n    ```\n\n"
        "````markdown\n```python\nnot a block of the page\n```\n````\n\n"
        "```bash\necho hi\n```\n"
    )
    blocks, errors = parse_page(page, "page.md")
    assert not errors
    assert [(b.line, b.runnable, b.setups, b.errors) for b in blocks] == [
        (4, False, [], []),
        (11, True, ["classifier"], []),
    ]
    assert blocks[0].markers["not-run"] == "needs a GPU"
    assert blocks[1].code == "trainer.fit(model)\n"


def test_not_run_check_catches_a_wrong_keyword():
    pytest.importorskip("autotimm_trainer")
    good = Block("page.md", 1, "trainer = AutoTrainer(accelerator='gpu', num_nodes=2)\n")
    bad = Block("page.md", 1, "trainer = AutoTrainer(max_epoch=3)\n")
    test_not_run_block_is_valid(good)
    with pytest.raises(AssertionError, match="max_epoch"):
        test_not_run_block_is_valid(bad)
