"""Fakes for the outside world: real HTTP servers on loopback, as strict as the services they stand for."""
