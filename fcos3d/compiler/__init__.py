"""fcos3d.compiler"""
