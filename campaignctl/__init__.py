"""campaignctl: a local-first outreach sequencer."""

__version__ = "0.1.0"
