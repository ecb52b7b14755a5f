"""A faithful AWS stand-in for the test suite: moto plus what moto lacks.

``fixtures.py`` provides the ``aws`` fixture (an :class:`Emulator`); ``server.py`` runs moto
behind ``layer.py`` (Service Quotas, Pricing, injected faults); ``runner.py`` makes ECS tasks
run as local processes; ``patches.py`` holds the in-process fixes to moto.
"""

from emulator.emulator import Emulator
from emulator.faults import Faults
from emulator.pricing import Prices
from emulator.quotas import Quotas
from emulator.runner import TaskRunner
from emulator.server import EmulatorServer

__all__ = ["Emulator", "EmulatorServer", "Faults", "Prices", "Quotas", "TaskRunner"]
