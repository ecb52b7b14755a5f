"""The worker: ``python -m starburst.worker --store URL --session ID --worker-id ID``."""
