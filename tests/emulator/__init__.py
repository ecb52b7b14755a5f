"""A faithful AWS stand-in for the test suite: moto plus what moto lacks.

``fixtures.py`` provides the ``aws`` fixture (an :class:`Emulator`); ``server.py`` runs moto
behind ``layer.py`` (Service Quotas, Pricing, injected faults); ``runner.py`` makes ECS tasks
run as local processes; ``capacity.py`` launches Auto Scaling groups' instances, registers
them with ECS and places tasks on them; ``patches.py`` holds the in-process fixes to moto.
"""

from emulator.capacity import Ec2Capacity
from emulator.emulator import Emulator, wait_until
from emulator.faults import Faults
from emulator.pricing import Prices
from emulator.quotas import Quotas
from emulator.runner import TaskRunner
from emulator.server import EmulatorServer

__all__ = [
    "Ec2Capacity",
    "Emulator",
    "EmulatorServer",
    "Faults",
    "Prices",
    "Quotas",
    "TaskRunner",
    "wait_until",
]
