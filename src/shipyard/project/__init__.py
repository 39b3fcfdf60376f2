"""The user's project tree: reading its spec file, detecting the app, writing shipyard.toml."""
