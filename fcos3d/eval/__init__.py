"""fcos3d.eval"""
