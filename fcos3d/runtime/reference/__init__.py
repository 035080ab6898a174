"""fcos3d.runtime.reference"""
