"""Cost: prices, billing rules, the live meter and its caps, and ``estimate``.

A backend that bills (Fargate today, EC2 later) hands out a ``PriceBook`` through
``Fleet.price_book``; everything else here is backend-neutral.
"""
