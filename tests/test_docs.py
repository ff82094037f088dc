"""docs/plugins.md must agree with the code: hook signatures, base-class methods, runnable examples.

Hooks are documented as a heading `register_<kind>(register)` plus a code block repeating the
spec (`def register_<kind>(register: ...) -> None:` and its docstring); base-class methods as
headings `Class.method(self, ...) -> ...`. Examples are the ```python blocks right after a
`<!-- example: register_<kind> -->` marker; they are executed here as real plugins.
"""

from __future__ import annotations

import inspect
import re
import sys
import types
from pathlib import Path

import click
import pytest

import v7
from v7.core import hookspecs
from v7.testing import collect_signals
from v7.core.candles import read_candles_csv
from v7.core.config import validate_config
from v7.core.engine import Pipeline, run_theory
from v7.core.components import KINDS, OPTIONAL_CAPABILITIES
from v7.core.registry import HOOK_KIND, PluginSource, Registry

REPO = Path(__file__).resolve().parents[1]
DOC_PATH = REPO / "docs" / "plugins.md"
BTC_CSV = REPO / "data" / "candles" / "BTC-USD.csv"

# The base-class methods the docs must cover, at least.
REQUIRED_METHODS = {
    "Theory.analyze", "Theory.prompt_section", "Feed.fetch_candles", "Feed.fetch_context",
    "PromptFormatter.format", "Synthesizer.synthesize", "Sink.open", "Sink.write", "Sink.close",
    "Component.supports",
}
# Every optional capability a base class declares is documented with its signature.
REQUIRED_METHODS |= {
    f"{KINDS[kind].__name__}.{name}" for kind, names in OPTIONAL_CAPABILITIES.items() for name in names
}
BASE_CLASSES = {"Component", "Theory", "Feed", "PromptFormatter", "Synthesizer", "Sink"}

HEADING = re.compile(r"^#{2,6}\s+`([^`]+)`\s*$", re.MULTILINE)
EXAMPLE = re.compile(r"<!--\s*example:\s*(\w+)\s*-->\s*\n```python\n(.*?)\n```", re.DOTALL)
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)\n^```", re.DOTALL | re.MULTILINE)


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC_PATH.read_text(encoding="utf-8")


def hook_specs() -> dict[str, types.FunctionType]:
    """Every function in the hookspec module that pluggy marked as a spec (`v7_spec`)."""
    marker = f"{hookspecs.PROJECT}_spec"
    return {name: obj for name, obj in vars(hookspecs).items() if inspect.isfunction(obj) and hasattr(obj, marker)}


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def annotation_text(annotation: object) -> str:
    # Modules with `from __future__ import annotations` keep annotations as source text, quotes included.
    if isinstance(annotation, str):
        return annotation.strip("'\"")
    return inspect.formatannotation(annotation)


def render(signature: inspect.Signature) -> str:
    """`(a: int, b: str = 'x') -> bool`, written the way the docs write it."""
    params = []
    for param in signature.parameters.values():
        prefix = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}.get(param.kind, "")
        text = prefix + param.name
        if param.annotation is not inspect.Parameter.empty:
            text += f": {annotation_text(param.annotation)}"
        if param.default is not inspect.Parameter.empty:
            text += f" = {param.default!r}"
        params.append(text)
    text = f"({', '.join(params)})"
    if signature.return_annotation is not inspect.Signature.empty:
        text += f" -> {annotation_text(signature.return_annotation)}"
    return squash(text)


def documented_methods(doc: str) -> dict[str, str]:
    """`Class.method` → the documented signature `(self, ...) -> ...`, from the doc's headings."""
    found = {}
    for code in HEADING.findall(doc):
        match = re.fullmatch(r"(\w+)\.(\w+)(\(.*)", code.strip())
        if match:
            found[f"{match[1]}.{match[2]}"] = squash(match[3])
    return found


# -- hooks ---------------------------------------------------------------------------------


def test_the_hookspec_module_has_a_hook_per_kind_and_register_commands():
    assert set(hook_specs()) == set(HOOK_KIND) | {"register_commands"}


@pytest.mark.parametrize("name", sorted(hook_specs()))
def test_every_hook_is_documented_with_its_exact_signature_and_docstring(doc, name):
    spec = hook_specs()[name]
    signature = inspect.signature(spec)
    headings = [squash(code) for code in HEADING.findall(doc)]
    short = f"{name}({', '.join(signature.parameters)})"
    assert short in headings, f"docs/plugins.md has no heading `{short}`"

    full = f"def {name}{render(signature)}:"
    defs = [squash(line) for line in doc.splitlines() if re.match(rf"\s*def {name}\(", line)]
    spec_defs = [line for line in defs if ":" in line.split("(", 1)[1].split(")", 1)[0]]  # the annotated copy
    assert spec_defs, f"docs/plugins.md does not repeat the spec of {name}"
    assert all(line == full for line in spec_defs), f"documented {spec_defs} != hookspec {full!r}"

    docstring = inspect.getdoc(spec)
    assert docstring and f'"""{docstring}"""' in doc, f"the docstring of {name} is not quoted in docs/plugins.md"


def test_every_hook_named_in_the_docs_exists(doc):
    named = set(re.findall(r"\bregister_\w+", doc))
    # A misspelling the docs warn about on purpose.
    unknown = named - set(hook_specs()) - {"register_theory"}
    assert not unknown, f"docs/plugins.md names hooks that do not exist: {sorted(unknown)}"


def test_one_marked_example_per_hook(doc):
    examples = EXAMPLE.findall(doc)
    marked = [hook for hook, _ in examples]
    assert sorted(marked) == sorted(hook_specs()), f"one `<!-- example: <hook> -->` block per hook expected, got {marked}"
    for hook, code in examples:
        argument = "cli" if hook == "register_commands" else "register"
        assert re.search(rf"^@hookimpl\ndef {hook}\({argument}\):", code, re.MULTILINE), f"the {hook} example does not implement it"


def test_every_python_block_compiles(doc):
    blocks = PYTHON_BLOCK.findall(doc)
    assert len(blocks) >= len(hook_specs())
    for index, code in enumerate(blocks):
        compile(code, f"docs/plugins.md python block {index + 1}", "exec")


# -- base classes --------------------------------------------------------------------------


def test_the_required_base_class_methods_are_documented(doc):
    missing = REQUIRED_METHODS - set(documented_methods(doc))
    assert not missing, f"docs/plugins.md does not document {sorted(missing)}"


def test_documented_methods_match_the_code(doc):
    for qualified, documented in documented_methods(doc).items():
        class_name, method_name = qualified.split(".")
        assert class_name in BASE_CLASSES, f"{qualified}: not a base class a plugin subclasses"
        cls = getattr(v7, class_name)
        method = getattr(cls, method_name, None)
        assert callable(method), f"{qualified} is documented but does not exist"
        assert documented == render(inspect.signature(method)), f"{qualified}: documented {documented!r}"


# -- the examples, run as real plugins -----------------------------------------------------


@pytest.fixture
def examples(doc, monkeypatch) -> dict[str, types.ModuleType]:
    """Each marked example as an importable module (pydantic resolves annotations through sys.modules)."""
    modules = {}
    for hook, code in EXAMPLE.findall(doc):
        module = types.ModuleType(f"v7_docs_example_{hook}")
        module.__file__ = f"{DOC_PATH}#{hook}"
        monkeypatch.setitem(sys.modules, module.__name__, module)
        exec(compile(code, f"docs/plugins.md ({hook} example)", "exec"), module.__dict__)
        modules[hook] = module
    return modules


def registry_with(modules: dict[str, types.ModuleType]) -> Registry:
    registry = Registry()  # fresh: no entry points, nothing shared with other tests
    for hook, module in modules.items():
        registry.add_plugin(module, PluginSource(plugin=f"docs-{hook}", distribution="v7-docs-examples", version="0"))
    assert not registry.errors, [error.describe() for error in registry.errors]
    return registry


def test_the_docs_teach_only_the_public_api(doc):
    for code in PYTHON_BLOCK.findall(doc):
        assert "v7.core" not in code and "v7.plugins" not in code, code[:200]


def test_the_command_example_adds_a_working_command(examples):
    from click.testing import CliRunner

    group = click.Group()
    examples["register_commands"].register_commands(cli=group)
    result = CliRunner().invoke(group, ["last-bar", "BTC-USD"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("BTC-USD ") and " close " in result.output


def test_the_theory_example_gives_an_ok_result_on_real_candles(examples):
    registry = registry_with({"register_theories": examples["register_theories"]})
    (component,) = [c for c in registry.all() if c.kind == "theory"]
    candles = read_candles_csv(BTC_CSV, "BTC-USD", "1h").tail(1000)
    result = run_theory(component.cls(), candles, timeout=10)
    assert result.status == "ok", result.message
    assert result.bias is not None and -1 <= result.bias <= 1
    assert component.cls().prompt_section(result)


def test_every_example_registers_one_component_of_its_kind(examples):
    registry = registry_with(examples)
    for hook, kind in HOOK_KIND.items():
        assert len(registry.names(kind)) == 1, f"the {hook} example should register one {kind}"


def test_the_examples_run_together_as_a_pipeline(examples, tmp_path):
    registry = registry_with(examples)
    names = {kind: registry.names(kind)[0] for kind in HOOK_KIND.values()}
    stored = tmp_path / "signals.csv"
    raw = {
        "engine": {"symbols": ["BTC-USD", "ETH-USD"], "lookback": 300},
        "feeds": {"enabled": [names["feed"]], names["feed"]: {"folder": str(REPO / "data" / "candles")}},
        "theories": {"enabled": [names["theory"]]},
        "formatters": {"enabled": [names["formatter"]]},
        "synthesizer": {"use": names["synthesizer"], "fallback": "none"},
        "sinks": {"enabled": [names["sink"]], names["sink"]: {"path": str(stored)}},
    }
    config = validate_config(raw, registry)
    signals = collect_signals(Pipeline.build(config, registry), iterations=1)

    assert sorted(s.symbol for s in signals) == ["BTC-USD", "ETH-USD"]
    for signal in signals:
        assert signal.synthesizer == names["synthesizer"] and signal.fallback_reason is None
        assert [r.status for r in signal.theory_results] == ["ok"]
        assert signal.context is not None and signal.context.source == names["feed"]
        assert f"| {names['theory']} | ok |" in (signal.prompt or "")
    lines = stored.read_text().splitlines()
    assert len(lines) == 1 + 2 and lines[0].startswith("symbol,")  # a header, then one row per signal

    # The same config over the same bars stores nothing twice.
    collect_signals(Pipeline.build(validate_config(raw, registry), registry), iterations=1)
    assert stored.read_text().splitlines() == lines
