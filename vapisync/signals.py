"""Receivers are connected here (filled in by the automatic-sync work)."""
