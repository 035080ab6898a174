"""fcos3d.model"""
