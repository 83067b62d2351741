"""Depots, vehicles, stops and route plans; vehicle-routing optimisation."""
