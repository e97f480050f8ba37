"""samix-hub: learned mixup (SAMix, SAMix^P; Li et al., arXiv 2111.15454) as a toolkit.

The public API. ``import samix_hub`` is cheap: the names below load (with torch and timm) on
first use (PEP 562), so ``samix-hub --help`` answers at once. The CIFAR-style backbones are
registered in timm whenever timm is imported in the same process, before or after this
package (:func:`register_backbones` does it explicitly). Modules inside the package never
import this file (docs/README.md "Which way imports go").
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from samix_hub._version import __version__

if TYPE_CHECKING:  # the lazy names, for type checkers and IDEs
    from importlib.machinery import ModuleSpec

    from samix_hub.hub.api import Generator, SAMixUp, load_backbone, load_generator
    from samix_hub.models import GeneratorConfig, MaskGenerator, Mixer, MixerConfig, create_encoder

__all__ = [
    "__version__",
    "Generator",
    "GeneratorConfig",
    "MaskGenerator",
    "Mixer",
    "MixerConfig",
    "SAMixUp",
    "create_encoder",
    "load_generator",
    "load_backbone",
    "register_backbones",
]

#: public name -> the module that defines it (imported on first access)
_LAZY = {
    "load_backbone": ".hub.api",
    "Generator": ".hub.api",
    "load_generator": ".hub.api",
    "SAMixUp": ".hub.api",
    "GeneratorConfig": ".models",
    "MaskGenerator": ".models",
    "Mixer": ".models",
    "MixerConfig": ".models",
    "create_encoder": ".models",
}

#: the module whose import registers the CIFAR-style backbones in timm
_BACKBONES = "samix_hub.models.backbones"


def __getattr__(name: str) -> Any:
    """PEP 562: a public name's module is imported on first use, then the name is kept."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def register_backbones() -> list[str]:
    """Register the CIFAR-style backbones (``resnet18_cifar``, ...) in timm now; returns their
    names. Imports torch and timm; registering twice is a no-op."""
    backbones = importlib.import_module(_BACKBONES)
    return list(backbones.CIFAR_BACKBONES)


class _RegisterWhenTimmLoads:
    """A ``sys.meta_path`` finder that registers the backbones right after ``timm`` itself is
    imported, by whoever imports it; it finds nothing itself and removes itself then."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != "timm":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_timm = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            del loader.exec_module  # one shot: the loader's own method again
            exec_timm(module)
            _remove_hook()
            importlib.import_module(_BACKBONES)

        try:
            object.__setattr__(loader, "exec_module", exec_module)
        except AttributeError:  # a loader without instance attributes: register_backbones()
            pass
        return spec


_HOOK = _RegisterWhenTimmLoads()


def _remove_hook() -> None:
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)


if "timm" in sys.modules:
    register_backbones()
elif not any(isinstance(f, _RegisterWhenTimmLoads) for f in sys.meta_path):
    sys.meta_path.insert(0, _HOOK)
