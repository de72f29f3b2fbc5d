"""portofcall-xmpp: an HTTP JSON service that probes XMPP servers."""

__version__ = "0.1.0"
