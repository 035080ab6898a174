"""fcos3d.data"""
