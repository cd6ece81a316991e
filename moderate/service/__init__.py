"""Front ends over HTTP: the API server, the moderators' web UI, and API tokens."""
