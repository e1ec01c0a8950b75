"""The capture stage: pcap/pcapng files (plain or gzip) -> ``PacketBatch`` columns, no per-packet Python.

``reader.read_batches(paths)`` is the entry point.  Modules, one concern each:
``columns`` (the contract with the flow stage), ``source`` (files, directories, gzip, mmap),
``walk`` (finding records without a per-record loop), ``pcap`` and ``pcapng`` (containers),
``linktypes`` (link types and next-protocol tables), ``decode`` (vectorised header decoding),
``fragments`` (ports for later IP fragments), ``views`` (typed views of raw bytes) and
``writer`` (small captures for tests).
"""
