"""portclass: label network flows with the IANA Service Name and Transport Protocol Port Number Registry."""

__version__ = "0.1.0"
