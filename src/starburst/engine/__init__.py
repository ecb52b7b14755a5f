"""The engine: sessions, runs, chunks, claims and the fleet policy, shared by every front end
and every backend (see docs/architecture.md)."""
