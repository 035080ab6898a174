"""fcos3d.quant"""
