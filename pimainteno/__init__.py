"""pimainteno: keep code projects healthy on the machines they run on."""

__version__ = "0.1.0"
