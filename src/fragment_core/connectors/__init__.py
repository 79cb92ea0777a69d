"""Built-in connectors, registered through the same hook as third-party plugins."""
