"""fcos3d.trainer"""
