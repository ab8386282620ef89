"""The console's widgets: one main widget per module."""
