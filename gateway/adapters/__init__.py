"""Thin asyncio transports around the sans-I/O protocol classes."""
