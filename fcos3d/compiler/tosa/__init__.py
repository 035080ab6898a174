"""The Arm NPU backend: int8 op list -> TOSA 1.0 flatbuffer (emit.py) -> Vela for Ethos-U (vela.py) -> artifact.

writer.py wraps tosa-tools' serializer, rescale.py maps our (multiplier, shift) to RESCALE exactly, perf.py sets
our latency estimate beside Vela's, artifact.py writes the folder. Imports nothing heavy until used.
"""
