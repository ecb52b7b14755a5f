"""The backends starburst knows, by name.

The built-in ones are listed in ``BUILT_IN`` and imported the first time they are named
(so ``import starburst`` does not import boto3). Others join with ``register(backend)``, or
from an installed package through the ``starburst.backends`` entry-point group (so that a
detached session's workers and supervisors, in other processes, find them too). A caller may
also pass a ``Backend`` instance itself (``backend=MyBackend()``): it is used as it is.
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points

from ..errors import ConfigurationError
from .base import Backend

#: name -> "module:attribute" of a built-in backend's class. Adding a backend: one line here.
BUILT_IN = {
    "local": "starburst.backends.local:LocalBackend",
    "fargate": "starburst.backends.fargate:FargateBackend",
    "ec2": "starburst.backends.ec2:Ec2Backend",
}
#: The entry-point group through which an installed package offers a backend.
ENTRY_POINT_GROUP = "starburst.backends"

_registered: dict[str, Backend] = {}
_lock = threading.Lock()


def register(backend: Backend, *, replace: bool = False) -> Backend:
    """Make ``backend`` known by its name in this process; a name that is taken by another
    backend is refused unless ``replace``."""
    if not isinstance(backend, Backend):
        raise ConfigurationError(
            f"{backend!r} is not a starburst backend: subclass starburst.backends.Backend"
        )
    with _lock:
        known = _registered.get(backend.name)
        if known is not None and known is not backend and not replace:
            raise ConfigurationError(
                f"a backend named {backend.name!r} is registered already ({known!r}); pass "
                "replace=True to replace it, or give yours another name"
            )
        _registered[backend.name] = backend
    return backend


def backend_names() -> list[str]:
    """The names a user can pass as ``backend=``: built-in, registered, installed."""
    installed = [entry.name for entry in entry_points(group=ENTRY_POINT_GROUP)]
    return list(dict.fromkeys([*BUILT_IN, *_registered, *installed]))


def backend_named(name: str) -> Backend:
    """The backend called ``name``, imported on first use."""
    with _lock:
        found = _registered.get(name)
    if found is not None:
        return found
    target = BUILT_IN.get(name)
    if target is None:
        offered = [e for e in entry_points(group=ENTRY_POINT_GROUP) if e.name == name]
        if not offered:
            raise ConfigurationError(
                f"backend={name!r} is not a backend starburst knows here; choose one of "
                f"{', '.join(backend_names())}, or register yours (starburst.backends.register)"
            )
        loaded = offered[0].load()
    else:
        module, _, attribute = target.partition(":")
        loaded = getattr(importlib.import_module(module), attribute)
    backend = loaded() if isinstance(loaded, type) else loaded
    with _lock:
        return _registered.setdefault(name, backend)


def as_backend(value: str | Backend) -> Backend:
    """A backend from a name, or an instance as it is (made known by its name in this
    process when the name is free, so that forked workers find it)."""
    if not isinstance(value, Backend):
        return backend_named(value)
    with _lock:
        _registered.setdefault(value.name, value)
    return value
