"""curvature"""
