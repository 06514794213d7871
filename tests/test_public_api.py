"""The public API: exported names, laziness of heavy imports, typing marker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import convrec


def test_exported_names_resolve():
    for name in convrec.__all__:
        assert getattr(convrec, name) is not None, name
    assert {"Recommender", "Item", "Message", "Event", "Suggestion", "Settings"} <= set(
        convrec.__all__)


def test_import_is_light():
    code = ("import sys, convrec, convrec.cli, convrec.types; "
            "heavy = [m for m in ('torch', 'chromadb', 'sentence_transformers') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_package_is_typed_and_namespaced(tmp_path):
    root = Path(convrec.__file__).parent
    assert (root / "py.typed").is_file()
    import importlib

    for name in ("convrec.knowledge", "convrec.adapters"):
        assert importlib.import_module(name).__name__ == name
    # Outside the checkout, no top-level 'plugin', 'knowledge' or 'adapters' is installed.
    code = ("import importlib.util as u; "
            "print([n for n in ('plugin', 'knowledge', 'adapters') if u.find_spec(n)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout.strip()
    assert out == "[]"
