"""Pure domain: aggregates and their events. Imports the standard library and eventsourcing only."""
