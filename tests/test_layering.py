"""The upper floors depend downwards only, and on each other's public names (issue 18).

Read from the source (every import statement, also those inside functions), so that a
lazy import cannot hide a cycle or a reach into another package's private parts.
"""

import ast
from pathlib import Path

import pytest

import convlstm

PACKAGE = Path(convlstm.__file__).parent


def imports_of(module: str) -> list[tuple[str, str | None]]:
    """``(imported module, imported name or None)`` for every import in ``module``."""
    path = PACKAGE.joinpath(*module.split(".")[1:])
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found += [(target, alias.name) for alias in node.names]
    return found


def modules_under(package: str) -> list[str]:
    root = PACKAGE.joinpath(*package.split(".")[1:])
    return [
        ".".join([package, *p.relative_to(root).with_suffix("").parts]).removesuffix(".__init__")
        for p in sorted(root.rglob("*.py"))
    ]


def private_reaches(imports: list[tuple[str, str | None]], own_package: str) -> list[str]:
    """Private modules or names of other convlstm packages among ``imports``."""
    reaches = []
    for target, name in imports:
        if not target.startswith("convlstm") or target.startswith(own_package):
            continue
        if any(part.startswith("_") for part in target.split(".")):
            reaches.append(target)
        elif name is not None and name.startswith("_"):
            reaches.append(f"{target}.{name}")
    return reaches


def test_the_import_reader_sees_lazy_and_relative_imports():
    # similarity imports the models lazily or not; either way the reader must resolve it.
    assert ("convlstm.models", "CNNLSTMClassifier") in imports_of("convlstm.diagnostics.similarity")
    assert ("convlstm.reports.plotting", "new_figure") in imports_of("convlstm.diagnostics.gates")


@pytest.mark.parametrize("module", modules_under("convlstm.diagnostics"))
def test_diagnostics_use_only_public_names_of_other_packages(module):
    assert private_reaches(imports_of(module), "convlstm.diagnostics") == []


def test_private_reaches_are_found():
    # What the diagnostics imported before issue 18, and what stays allowed.
    imports = [
        ("convlstm.reports.html", "_CSS"),
        ("convlstm.models._blocks", "FrameCNN"),
        ("convlstm.diagnostics._common", "eval_mode"),  # its own package's private module
        ("convlstm.reports.html", "image_tag"),
        ("torch._dynamo", None),  # not ours
    ]
    assert private_reaches(imports, "convlstm.diagnostics") == [
        "convlstm.reports.html._CSS",
        "convlstm.models._blocks",
    ]


def test_demo_takes_config_resolution_from_training_not_the_cli():
    targets = {target for target, _ in imports_of("convlstm.demo")}
    assert "convlstm.cli" not in targets
    assert ("convlstm.training.config", "resolve_config") in imports_of("convlstm.demo")


def test_evaluation_never_imports_the_run_back():
    # run.py imports evaluation (the fit ends with it); the way back would be a cycle.
    assert ("convlstm.training.evaluation", "evaluate_run") in imports_of("convlstm.training.run")
    targets = {target for target, _ in imports_of("convlstm.training.evaluation")}
    assert "convlstm.training.run" not in targets
    # The run folder's files (history included) sit below both.
    folder_targets = {target for target, _ in imports_of("convlstm.training.run_folder")}
    assert not folder_targets & {"convlstm.training.run", "convlstm.training.evaluation"}
