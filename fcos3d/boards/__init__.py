"""fcos3d.boards"""
