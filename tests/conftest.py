"""Every test's fixtures (projects, the CLI runner, the loopback fakes) live in tests/support."""

pytest_plugins = ["tests.support.fixtures", "tests.support.databases"]
