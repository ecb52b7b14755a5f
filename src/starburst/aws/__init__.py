"""Everything that talks to AWS: clients, the one-time setup, and what it creates."""
