"""The compiler's passes, one per file; fcos3d/compiler/pipeline.py lists them in order.

Each pass maps an IRModule (or, for the first, the simulator's ``IntGraph``) to an IRModule.
"""
