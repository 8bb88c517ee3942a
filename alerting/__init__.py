"""Alerting: per-project rules over the speed layer's minutes, evaluated every minute."""
