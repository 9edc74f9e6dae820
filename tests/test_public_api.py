"""Every module of the package declares its public names, and they exist."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import ipcs_fs

_MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(ipcs_fs.__path__, prefix="ipcs_fs.")
    if not any(part.startswith("_") for part in info.name.split("."))
)


@pytest.mark.parametrize("name", _MODULES)
def test_module_exports_exist(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if name.endswith("cli") or exported is None and not _defines_public(module):
        return
    assert exported is not None, f"{name} has public names but no __all__"
    missing = [item for item in exported if not hasattr(module, item)]
    assert missing == []
    assert len(set(exported)) == len(exported)


def _defines_public(module) -> bool:
    return any(
        not attribute.startswith("_")
        and getattr(value, "__module__", None) == module.__name__
        for attribute, value in vars(module).items()
    )


def test_package_modules_found() -> None:
    assert "ipcs_fs.layer.convert" in _MODULES
    assert "ipcs_fs.unixfs.file" in _MODULES
