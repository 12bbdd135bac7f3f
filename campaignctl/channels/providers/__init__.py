"""The built-in providers' declarations (see `channels.registry`): light modules, no SDK."""
