"""The reconciler: in-flight slots checked against job records, lost jobs ended (logic.py, loop.py)."""
