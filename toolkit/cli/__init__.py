"""The `tk` command line: the app and the renderers. The only code that prints; nothing imports it."""
