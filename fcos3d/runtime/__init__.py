"""fcos3d.runtime"""
