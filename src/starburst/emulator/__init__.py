"""A faithful AWS stand-in: moto plus what moto lacks, for the sandbox (``sandbox.py``:
``starburst.sandbox()``, ``starburst sandbox start``) and for tests (``fixtures.py``).

It needs ``pip install "starburst[sandbox]"`` (moto's server), except ``active.py``, which
every command asks whether a background sandbox runs. ``fixtures.py`` provides the ``aws``
fixture (an :class:`Emulator`); ``server.py`` runs moto behind ``layer.py`` (Service
Quotas, Pricing, injected faults); ``runner.py`` makes ECS tasks run as local processes;
``capacity.py`` launches Auto Scaling groups' instances, registers them with ECS and places
tasks on them; ``patches.py`` holds the in-process fixes to moto.
"""
