"""Market data: the bar frame, exchange calendars, sources, the simulator and validation."""
