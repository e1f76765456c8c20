"""Live updates for the API's streams: the in-memory hub, history from the store, the switch."""
