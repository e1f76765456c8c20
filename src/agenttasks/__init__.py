"""agenttasks: AI agents on background tasks, every step streamed live."""
