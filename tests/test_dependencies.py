"""What medkb imports from other packages is installed by pyproject.toml's requirements (directly
or as a requirement of one of them), not by whatever else happens to be in the development venv:
a fresh machine (`make serve`, CI) gets only what pyproject asks for."""

from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_by_pyproject() -> set[str]:
    """Normalised names of the distributions pyproject's dependencies bring in, transitively
    (markers evaluated for this interpreter, extras of a requirement followed)."""
    wanted = [Requirement(r) for r in tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]]
    seen: set[str] = set()
    while wanted:
        req = wanted.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        key = _key(req.name)
        if key in seen:
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            continue  # not installed here: nothing can be imported from it in this test either
        seen.add(key)
        for line in dist.requires or ():
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in [""] + sorted(req.extras)):
                wanted.append(sub)
    return seen


def _distributions_imported_by(code: str) -> dict[str, set[str]]:
    """Top-level modules a fresh interpreter has imported after running `code` -> the
    distributions that provide them (a fresh process: this one may have imported anything)."""
    out_text = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
                              check=True, capture_output=True, text=True, timeout=120).stdout
    providers = md.packages_distributions()
    out: dict[str, set[str]] = {}
    for name in out_text.split():
        top = name.split(".")[0]
        if top in providers:
            out[top] = {_key(d) for d in providers[top]}
    return out


def test_the_int8_recipe_imports_only_packages_pyproject_installs():
    # The default encoder is made by quantize_int8 (indexer/onnx_embedding.py) at first use: a
    # module it imports that pyproject does not install stops `make serve` on a fresh machine (it
    # did, for a while, when ONNX Runtime's MatMulNBits quantizer needed onnx_ir).
    imported = _distributions_imported_by("import onnx\nfrom onnxruntime.quantization import QuantType, quantize_dynamic")
    assert "onnxruntime" in imported
    installed = _installed_by_pyproject()
    missing = {top: dists for top, dists in imported.items() if not dists & installed}
    assert not missing, f"imported by the int8 quantization but not installed by pyproject.toml: {missing}"
