"""The IANA port registry: parsers, compiled lookup arrays, cache, sources and diff."""
